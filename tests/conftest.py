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
