"""The training core: exact resume after an interruption, EMA export, time limits, metrics log."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("left_as", ["checkpoint.tmp", "checkpoint.old"])
def test_a_kill_during_a_save_loses_no_checkpoint(tmp_path: Path, left_as: str) -> None:
    """A save deleted the old checkpoint before it renamed the new one into place: killed in between, the
    next start began again from step 0 (and its first save deleted the orphaned new one)."""
    _run(tmp_path, stop_at=7)
    (tmp_path / "checkpoint").rename(tmp_path / left_as)  # the only complete one, where a kill left it
    steps: list[int] = []

    class Counting(ToyStage):
        def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
            steps.append(step)
            return super().loss(model, step, gen, batch_size)

    train(Counting(), SPEC, tmp_path, ema_decay=0.9, save_every_minutes=100, show_progress=False)
    assert steps == list(range(7, 20))  # resumed at step 7, not started again


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


class PausedStage(ToyStage):
    """A toy stage whose process is stopped for a while during one step (kill -STOP, then -CONT)."""

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        if step == 12:
            import time

            time.sleep(1.0)
        return super().loss(model, step, gen, batch_size)


def test_a_paused_step_does_not_count_as_training_time(tmp_path: Path) -> None:
    spec = TrainSpec(batch_size=16, lr=1e-2, warmup=3, max_steps=20, max_minutes=5)
    metrics = train(PausedStage(), spec, tmp_path, show_progress=False, log_every=20)
    assert metrics["step"] == 20 and metrics["minutes"] * 60 < 0.5  # the 1 s pause is not training time


def test_time_schedule_spans_the_time_budget() -> None:
    from unclip.training.core import _lr_lambda, _Progress

    spec = TrainSpec(batch_size=1, lr=1.0, warmup=2, max_steps=10**9, max_minutes=1, schedule="time")
    progress, horizon = _Progress(), {"seconds": 60.0}
    f = _lr_lambda(spec, progress, horizon)
    assert f(0) == 0.5  # warm-up goes by steps
    progress.seconds = 30.0
    assert abs(f(5) - 0.525) < 1e-9  # half the time: half-way down the cosine, whatever the step
    progress.seconds = 90.0
    assert abs(f(5) - 0.05) < 1e-9
    assert (
        abs(_lr_lambda(TrainSpec(batch_size=1, lr=1.0, warmup=2, max_steps=12), progress, horizon)(7) - 0.525)
        < 1e-9
    )
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainSpec.from_config({"batch_size": 1, "lr": 1.0, "schedule": "linear"})


def test_time_schedule_ends_annealed(tmp_path: Path) -> None:
    stage = ToyStage()
    spec = TrainSpec(batch_size=16, lr=1e-2, warmup=1, max_steps=10**9, max_minutes=0.01, schedule="time")
    train(stage, spec, tmp_path, show_progress=False, log_every=1)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert float(rows[-1]["lr"]) < 0.2e-2 < 0.5e-2 < float(rows[len(rows) // 4]["lr"])


LAUNCHED = """
import os
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_core import ToyStage
from unclip.training.core import TrainSpec, train

spec = TrainSpec(batch_size=8, lr=1e-2, warmup=1, max_steps=10**9, max_minutes=0.02, schedule="time")
run = Path(sys.argv[1])
m = train(ToyStage(), spec, run, show_progress=False, save_every_minutes=0.005)
(run / f"final-{{os.environ['RANK']}}.txt").write_text(f"{{m['step']}} {{m['lr']}} {{m['minutes']}}")
"""


@pytest.mark.slow
def test_processes_agree_on_when_to_stop(tmp_path: Path) -> None:
    """Two processes (torchrun, gloo on the CPU: what `accelerate launch` starts on GPUs) stop by the clock at
    the same step with the same learning rate (a process that stopped alone would leave the other waiting in
    its next gradient all-reduce), and write their periodic checkpoints together."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED.format(tests=str(Path(__file__).parent)))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*torchrun, str(script), str(tmp_path / "run")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too: a hung pair would otherwise stay behind
        _, err = proc.communicate()
        pytest.fail(f"the processes hung: {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    run = tmp_path / "run"
    assert (run / "final-0.txt").read_text() == (run / "final-1.txt").read_text()  # step, lr, minutes
    ckpt = run / "checkpoint"
    assert {"random_states_0.pkl", "random_states_1.pkl", "done"} <= {f.name for f in ckpt.iterdir()}


class NormStage(ToyStage):
    """ToyStage with a batch norm, fed one fixed batch: its running statistics are known exactly."""

    name = "norm"

    def model(self) -> torch.nn.Module:
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4))

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        x = torch.linspace(-2, 3, batch_size * 8).reshape(batch_size, 8)
        return torch.nn.functional.mse_loss(model(x), x @ self.target + 1), {}


def test_exported_batch_norms_hold_the_averaged_weights_statistics(tmp_path: Path) -> None:
    """The EMA averages the parameters only: its weights were exported with the running statistics of the raw
    weights' activations (the judge's ResNet), which normalised every score with another network's figures."""
    stage = NormStage()
    train(stage, SPEC, tmp_path, ema_decay=0.9, save_every_minutes=100, show_progress=False)
    w, b = stage.exported["0.weight"], stage.exported["0.bias"]
    h = torch.linspace(-2, 3, SPEC.batch_size * 8).reshape(SPEC.batch_size, 8) @ w.T + b
    assert torch.allclose(stage.exported["1.running_mean"], h.mean(0), atol=1e-5)
    assert torch.allclose(stage.exported["1.running_var"], h.var(0), atol=1e-4)
