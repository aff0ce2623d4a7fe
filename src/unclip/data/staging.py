"""Write a dataset beside the one in place and swap it in only once it is whole."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTS = ("shards", "svg", "manifest.json")


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A hidden folder inside `out` to write a dataset's shards, svg and manifest into. When the block ends
    without an error they replace the dataset's (its manifest first out, last in: a folder never pairs one
    build's manifest with another's shards); on an error or an interruption the staging folder is removed and
    the dataset in `out`, if any, stays as it was. The source may be read from `out` itself while it runs."""
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
        if not (stage / "manifest.json").is_file():
            raise RuntimeError(f"no manifest written in {stage}")
        old = stage / ".replaced"
        old.mkdir()
        for part in PARTS:  # the manifest is first in PARTS: it leaves first
            if (out / part).exists():
                (out / part).rename(old / part)
        for part in reversed(PARTS):  # and comes back last
            if (stage / part).exists():
                (stage / part).rename(out / part)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
