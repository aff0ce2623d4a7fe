"""`--batch-size auto`: the smallest batch near the best samples per second on a GPU, the config's on a CPU,
the same batch again when a run resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from unclip.cli import app
from unclip.training.probe import Probe, choose, probe_batch_sizes, scaled_lr, time_steps
from unclip.training.run import Run, load_config


def test_choose_takes_the_smallest_batch_near_the_best_rate() -> None:
    probes = [Probe(512, 10_000, 51), Probe(1024, 19_000, 54), Probe(2048, 30_000, 68), Probe(4096, 31_000, 132)]
    assert choose(probes) == 2048  # 30k is within 10% of 31k; 19k is not
    assert choose(probes, tolerance=0.0) == 4096
    assert choose([*probes[:2], Probe(2048, 0, 0, out_of_memory=True)]) == 1024
    with pytest.raises(RuntimeError, match="memory"):
        choose([Probe(512, 0, 0, out_of_memory=True)])
    assert scaled_lr(4e-4, 512, 2048) == pytest.approx(8e-4)


def test_probing_doubles_until_the_rate_stops_growing_or_memory_runs_out() -> None:
    rates = {64: 100.0, 128: 190.0, 256: 300.0, 512: 310.0, 1024: 320.0}
    seen: list[int] = []

    def measure(b: int) -> Probe:
        seen.append(b)
        return Probe(b, rates[b], 1.0)

    probe_batch_sizes(measure, 64)
    assert seen == [64, 128, 256, 512]  # 310 is under 5% above 300: no point doubling again
    seen.clear()

    def oom_at_256(b: int) -> Probe:
        seen.append(b)
        return Probe(b, 0, 0, out_of_memory=True) if b >= 256 else Probe(b, rates[b], 1.0)

    assert choose(probe_batch_sizes(oom_at_256, 64)) == 128 and seen == [64, 128, 256]
    seen.clear()
    probe_batch_sizes(measure, 64, most=128)
    assert seen == [64, 128]


def _decoder_run(tiny_model: Path, emoji64: Path, run_dir: Path) -> tuple[Run, dict]:
    cfg = load_config("tiny")
    cfg["decoder"]["train"].update(max_steps=2, batch_size=4)
    cfg["decoder"]["init_from"] = str(tiny_model)  # every stage.model() the same weights
    run = Run(cfg, emoji64, run_dir, "cpu")
    shutil.copytree(tiny_model, run.model_dir, symlinks=True)  # the clip and movq the stage reads
    return run, cfg


def test_timing_runs_real_training_steps(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    run, _ = _decoder_run(tiny_model, emoji64, tmp_path)
    stage = run.stage("decoder")
    before = {k: v.clone() for k, v in stage.model().state_dict().items()}
    p = time_steps(stage, torch.device("cpu"), 4, steps=2, warmup=1)
    assert p.batch_size == 4 and p.samples_per_s > 0 and p.step_ms > 0 and not p.out_of_memory
    after = stage.model().state_dict()  # a fresh model: timing trains a throwaway copy
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_auto_keeps_the_config_batch_on_a_cpu_and_a_resumed_run_keeps_its_choice(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    run, _ = _decoder_run(tiny_model, emoji64, tmp_path / "cpu")
    run.train("decoder", {"batch_size": "auto"}, show_progress=False)
    summary = json.loads((run.run_dir / "decoder" / "summary.json").read_text())
    assert summary["batch_size"] == 4 and summary["learning_rate"] == run.cfg["decoder"]["train"]["lr"]
    assert not (run.run_dir / "decoder" / "batch.json").exists()

    # a run that chose on a GPU (batch.json written at its start) resumes with that batch and rate
    run, _ = _decoder_run(tiny_model, emoji64, tmp_path / "resumed")
    (run.run_dir / "decoder").mkdir(parents=True)
    (run.run_dir / "decoder" / "batch.json").write_text(json.dumps({"batch_size": 8, "lr": 1.5e-3}))
    run.train("decoder", {"batch_size": "auto"}, show_progress=False)
    summary = json.loads((run.run_dir / "decoder" / "summary.json").read_text())
    assert summary["batch_size"] == 8 and summary["learning_rate"] == 1.5e-3
    warmup = run.cfg["decoder"]["train"]["warmup"]
    assert summary["warmup_steps"] == max(1, round(warmup / 2))  # as many samples as the config's warm-up


@pytest.mark.parametrize("value", ["0", "-4", "big", "1.5"])
def test_the_cli_refuses_a_batch_size_that_is_neither_a_number_nor_auto(
    value: str, emoji64: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["train", "decoder", "--config", "tiny", "--data", str(emoji64), "--run-dir", str(tmp_path),
              "--batch-size", value],
    )  # fmt: skip
    assert result.exit_code == 2 and "auto" in result.output
