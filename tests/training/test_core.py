"""The training core: exact resume after an interruption, EMA export, time limits, metrics log."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from unclip.training.core import TrainSpec, train


class ToyStage:
    """Regression of a fixed random linear map; batches come from the step's generator, like real stages."""

    name = "toy"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.target = torch.randn(8, 4)
        self.exported: dict[str, torch.Tensor] = {}

    def model(self) -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        x = torch.randn(batch_size, 8, generator=gen)
        return torch.nn.functional.mse_loss(model(x), x @ self.target), {"x_mean": x.mean()}

    def export(self, model) -> None:
        self.exported = {k: v.detach().clone() for k, v in model.state_dict().items()}


SPEC = TrainSpec(batch_size=16, lr=1e-2, weight_decay=0.01, warmup=3, max_steps=20, max_minutes=5)


def _run(run_dir: Path, stop_at: int | None = None) -> ToyStage:
    stage = ToyStage()
    train(
        stage,
        SPEC,
        run_dir,
        ema_decay=0.9,
        save_every_minutes=100,
        log_every=5,
        show_progress=False,
        stop_at_step=stop_at,
    )
    return stage


def test_resume_after_interruption_is_exact(tmp_path: Path) -> None:
    straight = _run(tmp_path / "a")
    interrupted = _run(tmp_path / "b", stop_at=7)
    assert interrupted.exported == {}  # nothing exported by an interrupted run
    resumed = _run(tmp_path / "b")
    assert straight.exported.keys() == resumed.exported.keys()
    for k in straight.exported:
        torch.testing.assert_close(resumed.exported[k], straight.exported[k], rtol=0, atol=0)


def test_metrics_log_and_ema(tmp_path: Path) -> None:
    stage = _run(tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert {"lr", "items_per_s", "x_mean"} <= rows[0].keys()
    assert (tmp_path / "checkpoint" / "done").read_text() == "20"
    # the export holds the EMA weights, not the last raw weights kept in the checkpoint
    from safetensors.torch import load_file

    raw = load_file(tmp_path / "checkpoint" / "model.safetensors")
    assert raw.keys() == stage.exported.keys()
    assert any(not torch.equal(raw[k], stage.exported[k]) for k in raw)


def test_time_limit_stops_and_exports(tmp_path: Path) -> None:
    stage = ToyStage()
    spec = TrainSpec(batch_size=16, lr=1e-2, max_steps=10**9, max_minutes=0.002)
    metrics = train(stage, spec, tmp_path, show_progress=False, log_every=1)
    assert 0 < metrics["step"] < 10**9 and stage.exported
