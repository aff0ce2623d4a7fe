"""Copy a trained model folder for shipping: floating-point weights to fp16, files under 16 MB, links kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MAX_FILE_BYTES = 16 * 1024 * 1024


def _is_model(folder: Path) -> bool:
    """A model folder, or the part of one a training stage wrote (runs/CONFIG/model/decoder/movq alone)."""
    return folder.is_dir() and any(folder.rglob("config.json"))


def _earlier_copy(dst: Path, src: Path) -> bool:
    """Whether `dst` may be replaced by a copy of `src`: an empty folder, or one that holds nothing the model
    does not (a folder that merely has a config.json somewhere below it, ~/work, is not one)."""
    if not dst.is_dir() or dst.is_symlink():
        return False
    names = {p.name for p in src.iterdir()}
    return all(p.name in names for p in dst.iterdir())


def pack_model(src: Path, dst: Path, dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Write `src` to `dst` with weights cast to `dtype`; returns {relative path: bytes} of what was written.
    `dst`, when it exists, must be an earlier copy of the model (nothing in it the model lacks): it is replaced
    only once the new one is whole."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not _is_model(src):
        raise ValueError(f"{src} is not a model folder (no config.json in it)")
    if dst == src or src in dst.parents or dst in src.parents:
        raise ValueError(f"{dst} overlaps the model folder {src}: write the copy somewhere else")
    if dst.exists() and not _earlier_copy(dst, src):
        raise ValueError(
            f"{dst} exists and is not an earlier copy of {src.name} (it holds what the model does not): "
            "it is not replaced"
        )
    work = dst.with_name(dst.name + ".packing")
    if work.exists():
        shutil.rmtree(work)
    try:
        sizes = _copy(src, work, dtype)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if dst.exists():
        shutil.rmtree(dst)
    work.rename(dst)
    return sizes


def _copy(src: Path, dst: Path, dtype: torch.dtype) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        target = dst / rel
        inside = path.resolve() == src or src in path.resolve().parents
        if path.is_symlink() and inside:  # a part the model shares with itself (inpaint/movq): linked again
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.readlink(), target_is_directory=path.is_dir())
            continue
        if path.is_symlink() and not path.is_file():  # the copy's link would point nowhere
            raise ValueError(f"{rel} links to a folder outside the model ({path.resolve()}): copy it in first")
        if path.is_dir() or any(p.is_symlink() for p in path.relative_to(src).parents if p != Path(".")):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors":
            tensors = {
                k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
                for k, v in load_file(path).items()
            }
            save_file(tensors, target, metadata={"format": "pt"})
        else:
            shutil.copy2(path, target)
        sizes[str(rel)] = target.stat().st_size
        if sizes[str(rel)] > MAX_FILE_BYTES:
            raise ValueError(f"{rel} is {sizes[str(rel)] / 2**20:.1f} MB; save it with max_shard_size='15MB'")
    return sizes
