"""The full emoji build from the real, pinned npm packages (fetched with `npm pack` unless cached), at 64 px.

Slow: minutes with a cold cache. UNCLIP_TEST_CACHE picks the cache folder (default: the repository's cache/).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from shutil import which as real_which  # read at import, before the session's `no_npm` fixture stubs it

import pytest

from unclip import REPO_ROOT
from unclip.data import sources
from unclip.data.build import BuildConfig, build
from unclip.data.sources import STYLES
from unclip.data.stats import DEFAULT_HOLDOUT, dataset_stats


@pytest.mark.slow
def test_build_from_the_real_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.shutil, "which", real_which)  # npm may be needed here, whatever ran before
    cache = Path(os.environ.get("UNCLIP_TEST_CACHE", REPO_ROOT / "cache"))
    out = tmp_path / "emoji"
    m = build(BuildConfig(out=out, cache=cache, holdout=DEFAULT_HOLDOUT, sizes=(64,)))
    assert set(m["join"]) == set(STYLES)
    for style, j in m["join"].items():
        # every set joins thousands of emoji (the smallest: high-contrast ~1.6k, emojione ~1.5k)
        assert j["joined"] >= 1000, (style, j)
        assert j["dropped"] < j["icons"] / 4, (style, j)
    assert m["counts"]["train"]["total"] > 15_000 and m["counts"]["val"]["total"] > 300
    assert m["counts"]["test"]["total"] > 500
    assert m["emoji_per_split"]["train"] > 1500
    h = m["holdout"]
    assert h["pairs_listed"] == 300 and h["pairs_found"] >= 298 and h["excluded_from_training"]
    assert h["identical_drawings_dropped"] == 14  # openmoji (man) firefighter, wheelchair; two high-contrast
    assert len(m["locales"]) == 28
    stats = dataset_stats(out)
    assert stats["holdout"]["leaks_in_train_val"] == 0
    sample = json.loads((out / "manifest.json").read_text())
    assert sample["images_per_size"]["64"] == sum(c["total"] for c in m["counts"].values())
