"""Shared fixtures: a tiny random-weight model folder and a 64 px dataset built from the shipped fixture."""

from __future__ import annotations

import os

# Before torch loads: spinning OpenMP threads stall on a shared 2-core machine (measured 10x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "emoji"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unclip.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def emoji64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's emoji rendered at 64 px (the size every training stage reads), without network."""
    from unclip.data.build import BuildConfig, build

    root = tmp_path_factory.mktemp("emoji64")
    (root / "cache" / "npm").mkdir(parents=True)
    for tgz in sorted((FIXTURE / "npm").glob("*.tgz")):
        shutil.copy(tgz, root / "cache" / "npm" / tgz.name)
    build(
        BuildConfig(
            out=root / "data",
            cache=root / "cache",
            holdout=FIXTURE / "holdout.tsv",
            sizes=(64,),
            locales=("en", "de", "ja"),
            workers=1,
            test_percent=25,
            val_percent=25,
        )
    )
    return root / "data"


@pytest.fixture(scope="session")
def tiny_judge(emoji64: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small judge trained for a few seconds on the fixture's renders."""
    from unclip.training.run import Run, load_config

    cfg = load_config("tiny")
    cfg["judge"]["arch"] = {"embedding_size": 16, "hidden_sizes": [16, 32, 32, 48], "depths": [1, 1, 1, 1]}
    run = Run(cfg, emoji64, tmp_path_factory.mktemp("judge"), "cpu")
    run.train("judge", {"max_steps": 120, "batch_size": 32, "lr": 3e-3}, show_progress=False)
    return run.judge_dir
