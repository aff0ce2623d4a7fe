"""`accelerate launch` with 2 CPU processes (gloo) runs the same trainer as one process, and at an equal global
batch follows the same loss curve and learning-rate schedule."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = 100


def unclip(*args: str, launch: int = 0, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "unclip", "train", *args, "--device", "cpu"]
    if launch:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1"]
        launcher += ["--num_processes", str(launch), "--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd = [*launcher, "-m", "unclip", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)  # the trainer picks gloo on CPUs by itself
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def curve(run: Path, stage: str) -> tuple[list[float], list[float]]:
    with (run / stage / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return [float(r["loss"]) for r in rows], [float(r["lr"]) for r in rows]


def windows(values: list[float], n: int = 5) -> list[float]:
    size = len(values) // n
    return [sum(values[i * size : (i + 1) * size]) / size for i in range(n)]


@pytest.fixture(scope="module")
def runs(emoji64: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config with 100-step stages at batch 32, and a run folder with its tokenizer and text tower."""
    root = tmp_path_factory.mktemp("launch")
    cfg = json.loads((Path(__file__).parents[2] / "configs" / "tiny.json").read_text())
    cfg["name"] = "tiny-launch"
    for stage in ("clip", "prior"):
        cfg[stage]["train"].update({"max_steps": STEPS, "batch_size": 32, "lr": 1e-3, "max_minutes": 10})
    (root / "cfg.json").write_text(json.dumps(cfg))
    unclip("tokenizer", *common(emoji64), "--run-dir", "base", cwd=root)
    unclip("clip", *common(emoji64), "--run-dir", "base", cwd=root)  # the prior reads this text tower
    return root


def common(data: Path) -> list[str]:
    return ["--config", "cfg.json", "--data", str(data)]


def one_and_two(root: Path, data: Path, stage: str, name: str) -> tuple[list[float], list[float]]:
    """The stage trained by 1 process at batch 32 and by 2 processes at batch 16 each; their loss windows."""
    for procs in (1, 2):
        run = root / f"{name}-{procs}"
        shutil.copytree(root / "base" / "model", run / "model")
        args = [stage, *common(data), "--run-dir", run.name, "--batch-size", str(32 // procs)]
        unclip(*args, launch=procs if procs > 1 else 0, cwd=root)
    (loss1, lr1), (loss2, lr2) = curve(root / f"{name}-1", stage), curve(root / f"{name}-2", stage)
    assert len(loss1) == len(loss2) == STEPS // 2  # the tiny config logs every 2 steps, from process 0 only
    assert lr1 == pytest.approx(lr2)  # one schedule step per optimizer step, whatever the process count
    assert (root / f"{name}-2" / "model" / "prior").is_dir()
    return windows(loss1), windows(loss2)


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one(runs: Path, emoji64: Path) -> None:
    w1, w2 = one_and_two(runs, emoji64, "prior", "prior")
    assert w1[-1] < 0.6 * w1[0] and w2[-1] < 0.6 * w2[0]  # both learned
    for a, b in zip(w1, w2, strict=True):  # the two see different samples: the curves match in the mean
        assert abs(a - b) / a < 0.25, (w1, w2)
    second_half = sum(w1[2:]) / 3, sum(w2[2:]) / 3
    assert abs(second_half[0] - second_half[1]) / second_half[0] < 0.12, (w1, w2)


@pytest.mark.slow
def test_a_contrastive_loss_sees_the_global_batch(runs: Path, emoji64: Path) -> None:
    """CLIP's loss compares every caption with every image of the batch: two processes of 16 must compute it
    over all 32 rows (batch 16 alone starts some 20% lower, with half the negatives)."""
    w1, w2 = one_and_two(runs, emoji64, "clip", "clip")
    for a, b in zip(w1, w2, strict=True):
        assert abs(a - b) / a < 0.08, (w1, w2)
