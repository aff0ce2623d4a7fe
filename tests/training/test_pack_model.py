"""`unclip pack-model`: the shippable copy of a model folder, and what it never deletes."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors.torch import load_file
from typer.testing import CliRunner

from unclip.cli import app

runner = CliRunner()


def test_pack_model_writes_fp16_and_replaces_only_an_earlier_copy(tiny_model: Path, tmp_path: Path) -> None:
    """A mistyped source emptied the destination, and a source packed onto itself was deleted (exit 0)."""
    src = tmp_path / "model"
    shutil.copytree(tiny_model, src, symlinks=True)
    dst = tmp_path / "packed"
    ok = runner.invoke(app, ["pack-model", str(src), str(dst)])
    assert ok.exit_code == 0, ok.output
    weights = next(dst.rglob("*.safetensors"))
    assert {str(t.dtype) for t in load_file(weights).values() if t.is_floating_point()} == {"torch.float16"}
    again = runner.invoke(app, ["pack-model", str(src), str(dst)])  # an earlier copy is replaced
    assert again.exit_code == 0 and not (tmp_path / "packed.packing").exists()

    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    work = tmp_path / "work"  # a folder with a config.json somewhere below it is not a model's earlier copy
    (work / "some-app").mkdir(parents=True)
    (work / "some-app" / "config.json").write_text("{}")
    (work / "thesis.txt").write_text("mine")
    for args in ([tmp_path / "typo", dst], [src, src], [src, src / "inside"], [src, tmp_path], [src, keep],
                 [src, work]):  # fmt: skip
        bad = runner.invoke(app, ["pack-model", *map(str, args)])
        assert bad.exit_code == 2 and "error:" in bad.output, (args, bad.output)
    assert (keep / "notes.txt").read_text() == "mine" and (work / "thesis.txt").read_text() == "mine"
    assert weights.exists()
    listing = lambda root: sorted(p.relative_to(root) for p in root.rglob("*"))  # noqa: E731
    assert listing(src) == listing(tiny_model)  # the model folder is whole
