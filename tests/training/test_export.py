"""A stage's export replaces the model folder's parts whole, and leaves the parts it read alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from unclip.training.export import save_parts


def _pipeline(tmp: Path, weights: str, fail: bool = False) -> None:
    for part in ("prior", "image_encoder"):
        (tmp / part).mkdir()
        (tmp / part / "model.safetensors").write_text(weights[: len(weights) // 2])
        if fail:
            raise OSError(28, "No space left on device")
        (tmp / part / "model.safetensors").write_text(weights)
    (tmp / "model_index.json").write_text("{}")


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "model" / "prior"
    save_parts(lambda tmp: _pipeline(tmp, "first"), folder)
    with pytest.raises(OSError):
        save_parts(lambda tmp: _pipeline(tmp, "second weights", fail=True), folder)
    assert (folder / "prior" / "model.safetensors").read_text() == "first"  # not half of the second
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["prior"]  # no temporary folder left
    save_parts(lambda tmp: _pipeline(tmp, "second weights"), folder, keep=("image_encoder",))
    assert (folder / "prior" / "model.safetensors").read_text() == "second weights"
    assert (folder / "image_encoder" / "model.safetensors").read_text() == "first"  # kept: it was there
    assert (folder / "model_index.json").is_file()
