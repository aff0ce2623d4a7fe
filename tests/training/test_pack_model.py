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


def test_a_weights_file_linked_from_outside_the_model_is_packed_as_a_file(tiny_model: Path, tmp_path: Path) -> None:
    """A model assembled with links (as a Hugging Face cache is) was packed with the same relative links, which
    point nowhere from the copy: exit 0, and the copy did not load."""
    src = tmp_path / "candidate" / "model"
    shutil.copytree(tiny_model, src, symlinks=True)
    (tmp_path / "candidate" / "blobs").mkdir()
    weights = src / "upsampler-256" / "diffusion_pytorch_model.safetensors"
    weights.rename(tmp_path / "candidate" / "blobs" / "up.safetensors")
    weights.symlink_to("../../blobs/up.safetensors")
    dst = tmp_path / "ship" / "deeper" / "packed"
    assert runner.invoke(app, ["pack-model", str(src), str(dst)]).exit_code == 0
    packed = dst / "upsampler-256" / "diffusion_pytorch_model.safetensors"
    assert packed.is_file() and not packed.is_symlink()
    assert {str(t.dtype) for t in load_file(packed).values() if t.is_floating_point()} == {"torch.float16"}
    assert (dst / "inpaint" / "movq").is_symlink() == (src / "inpaint" / "movq").is_symlink()  # kept inside
