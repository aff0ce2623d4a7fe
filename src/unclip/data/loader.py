"""Streaming batches from WebDataset tar shards: the emoji shards, or anything img2dataset writes.

A sample is the group of consecutive tar members that share a key: an image (`png`, `jpg`, `jpeg` or
`webp`), a caption (`txt`) and optional metadata (`json`); our shards add `alpha.png`. Batches hold float
images in [-1, 1] at the resolution asked for, whatever size the shards were written at:

    loader = WebDatasetLoader(dataset_shards(Path("data/emoji"), 64, "train"), size=64, batch_size=32,
                              shuffle=2000, augment=True, seed=0, epochs=None)
    for batch in torch.utils.data.DataLoader(loader, batch_size=None, num_workers=4):
        batch["images"], batch["captions"], batch["meta"]

The loader is a torch IterableDataset: DataLoader workers (and torch.distributed ranks) each read a
disjoint part of the data, by shard when there are enough shards and by sample otherwise.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from unclip.data.shards import iter_tar

log = logging.getLogger(__name__)

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
FITS = ("pad", "crop", "stretch")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def expand_shards(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Shard paths from a folder (every .tar below it), a file, a glob ("data/*.tar"), a WebDataset brace
    range ("data/{00000..00099}.tar") or a list of any of these."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in expand_shards(s)]
    text = str(spec)
    m = _BRACES.search(text)
    if m:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") else 0
        return [
            p
            for i in range(int(lo), int(hi) + 1)
            for p in expand_shards(text[: m.start()] + str(i).zfill(width) + text[m.end() :])
        ]
    path = Path(text)
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.name.endswith(SHARD_SUFFIXES) and p.is_file()
        )
    if path.exists():
        return [path]
    if any(c in text for c in "*?["):
        root = Path(path.anchor) if path.is_absolute() else Path()
        found = sorted(root.glob(str(path.relative_to(root)) if path.is_absolute() else text))
        if found:
            return found
    raise FileNotFoundError(f"no shards at {text}")


def shard_sizes(data_dir: Path) -> list[int]:
    """The image sizes a dataset in our layout was written at (data_dir/shards/{size}/)."""
    root = data_dir / "shards"
    return (
        sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
        if root.is_dir()
        else []
    )


def dataset_shards(data: Path | str, size: int, split: str = "train") -> list[Path]:
    """The shards to read `split` at `size` from. In our layout (data/shards/{size}/{split}-*.tar) that is the
    smallest size written at or above `size` that holds the split, else the largest below; anything else
    (an img2dataset output folder, a glob, a file) is read whole, whatever the split."""
    data = Path(data)
    sizes = shard_sizes(data) if data.is_dir() else []
    if not sizes:
        return expand_shards(data)
    have = [s for s in sizes if any((data / "shards" / str(s)).glob(f"{split}-*.tar"))]
    if not have:
        raise FileNotFoundError(f"no {split} shards in {data}/shards/ (sizes {sizes})")
    above = [s for s in have if s >= size]
    # the large renders cover a capped subset only: prefer the complete smaller sizes when one is big enough
    chosen = min(above) if above else max(have)
    manifest = data / "manifest.json"
    if chosen >= 1024 and manifest.exists():
        limit = json.loads(manifest.read_text()).get("large_limit_per_split")
        if limit:
            log.warning(
                "%s px shards of %s hold a subset only: at most %s images per split", chosen, data, limit
            )
    return sorted((data / "shards" / str(chosen)).glob(f"{split}-*.tar"))


def _fit(im: Image.Image, size: int, fit: str, fill: int | tuple[int, ...]) -> Image.Image:
    w, h = im.size
    if (w, h) == (size, size):
        return im
    if fit == "stretch" or w == h:
        return im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if fit == "crop":
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        return im.crop((left, top, left + size, top + size))
    s = size / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    canvas = Image.new(im.mode, (size, size), fill)
    canvas.paste(
        im.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0), ((size - nw) // 2, (size - nh) // 2)
    )
    return canvas


def decode_image(
    data: bytes, size: int, fit: str = "pad", alpha: bytes | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(RGB on white uint8 [size, size, 3], alpha uint8 [size, size]) from encoded image bytes.

    Transparent images are composed on white. `fit` says how a non-square image becomes square: "pad"
    (centred on white, alpha 0 around it), "crop" (centre crop) or "stretch". `alpha`: a separate alpha
    image, as our shards carry next to an RGB image that is already on white."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    with Image.open(io.BytesIO(data)) as src:
        if src.format == "JPEG":
            src.draft("RGB", (size, size))  # decode big JPEGs at a reduced scale: much faster
        im = ImageOps.exif_transpose(src)
        if alpha is not None:
            rgb = im.convert("RGB")
            with Image.open(io.BytesIO(alpha)) as a:
                mask = a.convert("L")
            if mask.size != rgb.size:
                mask = mask.resize(rgb.size, Image.Resampling.BILINEAR)
        elif im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            mask = rgba.getchannel("A")
            rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert(
                "RGB"
            )
        else:
            rgb = im.convert("RGB")
            mask = Image.new("L", rgb.size, 255)
    rgb_arr = np.asarray(_fit(rgb, size, fit, (255, 255, 255)))
    return rgb_arr, np.asarray(_fit(mask, size, fit, 0))


def image_ext(sample: dict[str, Any]) -> str | None:
    return next((e for e in IMAGE_EXTS if e in sample), None)


def sample_meta(sample: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if "json" in sample:
        try:
            loaded = json.loads(sample["json"])
            meta = loaded if isinstance(loaded, dict) else {"json": loaded}
        except (ValueError, UnicodeDecodeError):
            meta = {}
    meta.setdefault("key", sample["__key__"])
    return meta


def sample_captions(
    sample: dict[str, Any], meta: dict[str, Any], locales: Sequence[str] | None = None
) -> list[str]:
    """Every caption of a sample: the json's {"captions": {locale: [...]}} (restricted to `locales`), else the
    txt (each non-empty line), else img2dataset's json "caption"."""
    caps = meta.get("captions")
    out: list[str] = []
    if isinstance(caps, dict):
        out = [c for loc, cs in caps.items() if not locales or loc in locales for c in cs if c]
    if not out and "txt" in sample:
        out = [line.strip() for line in sample["txt"].decode("utf-8", "replace").splitlines() if line.strip()]
    if not out and isinstance(meta.get("caption"), str):
        out = [meta["caption"]]
    return out


@dataclass
class WebDatasetLoader(torch.utils.data.IterableDataset):
    """Batches {"images": float [B, 3, S, S] in [-1, 1] (RGB on white), "captions": list[str] (one per image),
    "meta": list[dict] (the json, with "key"), "keys": list[str]} and with `alpha=True` also
    "alpha": float [B, 1, S, S] in [0, 1].

    shuffle: size of the shuffle buffer (0: shards and samples in order). augment: True for the emoji
    augmentation (random scale and shift on white, no flips), or a function (images, generator) → images.
    captions: "random" draws one of the sample's captions (json "captions" in `locales`, else the txt lines)
    each time; "txt" takes the txt as written. epochs: passes over the data (None: forever).
    Seeded: the same seed, epoch and worker layout give the same batches."""

    shards: Sequence[Path | str] | str | Path
    size: int = 64
    batch_size: int = 32
    shuffle: int = 1000
    seed: int = 0
    augment: bool | Augment = False
    fit: str = "pad"
    captions: str = "random"
    locales: Sequence[str] | None = None
    epochs: int | None = 1
    drop_last: bool = False
    alpha: bool = False
    skip_errors: bool = True
    epoch: int = field(default=0, init=False)
    errors: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        super().__init__()
        self.paths = expand_shards(self.shards) if self.shards else []
        if not self.paths:
            raise FileNotFoundError(f"no shards in {self.shards}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}")
        if self.captions not in ("random", "txt"):
            raise ValueError("captions must be 'random' or 'txt'")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    # -- partitioning ---------------------------------------------------------------------------------------
    @staticmethod
    def _rank() -> tuple[int, int]:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def partition(self, epoch: int, worker: int = 0, workers: int = 1, rank: int = 0, world: int = 1):
        """(this reader's shards, sample stride, sample offset): by shard when every reader gets one."""
        paths = list(self.paths)
        if self.shuffle:
            random.Random(f"{self.seed}/{epoch}").shuffle(paths)
        n, idx = workers * world, rank * workers + worker
        if len(paths) >= n:
            return paths[idx::n], 1, 0
        return paths, n, idx

    # -- samples --------------------------------------------------------------------------------------------
    def _decode(
        self, sample: dict[str, Any], rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray, str, dict] | None:
        ext = image_ext(sample)
        if ext is None:
            return None
        meta = sample_meta(sample)
        rgb, a = decode_image(sample[ext], self.size, self.fit, sample.get("alpha.png"))
        if self.captions == "txt" and "txt" in sample:
            caption = sample["txt"].decode("utf-8", "replace").strip()
        else:
            caps = sample_captions(sample, meta, self.locales)
            caption = rng.choice(caps) if caps else ""
        return rgb, a, caption, meta

    def samples(
        self, epoch: int, worker: int = 0, workers: int = 1, rank: int = 0, world: int = 1
    ) -> Iterator[tuple]:
        """Decoded (rgb, alpha, caption, meta) of one reader in one epoch, through the shuffle buffer."""
        paths, stride, offset = self.partition(epoch, worker, workers, rank, world)
        rng = random.Random(f"{self.seed}/{epoch}/{rank}/{worker}")
        buffer: list[dict[str, Any]] = []

        def raw() -> Iterator[dict[str, Any]]:
            i = 0
            for path in paths:
                try:
                    for sample in iter_tar(Path(path)):
                        if i % stride == offset:
                            yield sample
                        i += 1
                except Exception as exc:  # a truncated or unreadable shard: skip the rest of it
                    if not self.skip_errors:
                        raise
                    self.errors += 1
                    log.warning("skipping the rest of %s: %s", path, exc)

        def decoded(sample: dict[str, Any]) -> tuple | None:
            try:
                return self._decode(sample, rng)
            except Exception as exc:
                if not self.skip_errors:
                    raise
                self.errors += 1
                log.warning("skipping sample %s: %s", sample.get("__key__"), exc)
                return None

        for sample in raw():
            if self.shuffle <= 1:
                out = decoded(sample)
                if out is not None:
                    yield out
                continue
            if len(buffer) < self.shuffle:
                buffer.append(sample)
                continue
            j = rng.randrange(len(buffer))
            buffer[j], sample = sample, buffer[j]
            out = decoded(sample)
            if out is not None:
                yield out
        rng.shuffle(buffer)
        for sample in buffer:
            out = decoded(sample)
            if out is not None:
                yield out

    # -- batches --------------------------------------------------------------------------------------------
    def _augment_fn(self) -> Augment | None:
        if self.augment is True:
            from unclip.training.data import augment

            return augment
        return self.augment or None

    def _collate(self, items: list[tuple], gen: torch.Generator, aug: Augment | None) -> dict[str, Any]:
        images = (
            torch.from_numpy(np.stack([it[0] for it in items]))
            .permute(0, 3, 1, 2)
            .float()
            .div(127.5)
            .sub(1.0)
        )
        alpha = torch.from_numpy(np.stack([it[1] for it in items]))[:, None].float().div(255.0)
        if aug is not None:
            # alpha rides along as a fourth channel, "white" (1) where transparent: padding stays transparent
            both = aug(torch.cat([images, 1.0 - 2.0 * alpha], 1), gen)
            images, alpha = both[:, :3].clamp(-1, 1), ((1.0 - both[:, 3:]) / 2).clamp(0, 1)
        batch = {
            "images": images,
            "captions": [it[2] for it in items],
            "meta": [it[3] for it in items],
            "keys": [it[3]["key"] for it in items],
        }
        if self.alpha:
            batch["alpha"] = alpha
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self._rank()
        aug = self._augment_fn()
        epoch = self.epoch
        while self.epochs is None or epoch < self.epoch + self.epochs:
            gen = torch.Generator().manual_seed(hash((self.seed, epoch, rank, worker)) & 0x7FFF_FFFF)
            items: list[tuple] = []
            for item in self.samples(epoch, worker, workers, rank, world):
                items.append(item)
                if len(items) == self.batch_size:
                    yield self._collate(items, gen, aug)
                    items = []
            if items and not self.drop_last:
                yield self._collate(items, gen, aug)
            epoch += 1


def load_batches(
    data: Path | str, size: int, split: str = "train", batch_size: int = 32, workers: int = 0, **kwargs: Any
) -> torch.utils.data.DataLoader:
    """A DataLoader over `split` of a dataset folder (ours or img2dataset's) at `size`; kwargs go to
    WebDatasetLoader."""
    ds = WebDatasetLoader(dataset_shards(data, size, split), size=size, batch_size=batch_size, **kwargs)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=False)
