"""Writing a stage's pipeline into the run's model folder whole."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def save_parts(save: Callable[[Path], None], folder: Path, keep: Iterable[str] = ()) -> None:
    """`save(tmp)` writes a pipeline into a temporary folder beside `folder`; each of its parts then replaces
    `folder`'s by a rename, so a kill leaves whole files (saving in place left truncated weights, which every
    later stage that reads them failed on). Parts named in `keep` that `folder` has already are left as they
    are: parts the stage read and did not train (a frozen tower, the autoencoder another stage writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = set(keep)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        save(Path(tmp))
        for part in sorted(Path(tmp).iterdir()):
            dest = folder / part.name
            if part.name in keep and (dest.exists() or dest.is_symlink()):
                continue
            if dest.is_symlink() or dest.is_file():
                dest.unlink()
            elif dest.exists():
                shutil.rmtree(dest)
            part.rename(dest)
