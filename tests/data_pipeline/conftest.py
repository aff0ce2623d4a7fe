"""Fixtures: the tiny npm tarballs of tests/fixtures/emoji in a temporary cache, and one dataset built from
them (16 and 32 px, captions in en, de and ja) that most tests read. No network: npm is never run."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from unclip.data import sources
from unclip.data.build import BuildConfig, build

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emoji"
HOLDOUT = FIXTURE / "holdout.tsv"
SIZES = (16, 32)


def make_cache(root: Path) -> Path:
    """A cache folder whose npm/ holds the fixture tarballs, as `npm pack` would have left them."""
    (root / "npm").mkdir(parents=True, exist_ok=True)
    for tgz in sorted((FIXTURE / "npm").glob("*.tgz")):
        shutil.copy(tgz, root / "npm" / tgz.name)
    return root


def fixture_config(out: Path, cache: Path, **kw: Any) -> BuildConfig:
    # generous val/test shares so that the dozen fixture emoji fill every split
    return BuildConfig(
        out=out,
        cache=cache,
        holdout=HOLDOUT,
        **{
            "sizes": SIZES,
            "locales": ("en", "de", "ja"),
            "workers": 1,
            "test_percent": 25,
            "val_percent": 25,
            **kw,
        },
    )


@pytest.fixture(scope="session")
def no_npm() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources.shutil, "which", lambda name: None)  # a missing tarball fails instead of fetching
        yield


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, no_npm: None) -> tuple[Path, dict]:
    """(dataset folder, manifest) of the fixture build."""
    out = tmp_path_factory.mktemp("data")
    return out, build(fixture_config(out, cache_dir))


def image_bytes(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()
