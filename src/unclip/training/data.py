"""The dataset held in memory as tensors for fast random batches; built from the WebDataset shards."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unclip.data.captions import names_style
from unclip.data.shards import iter_samples
from unclip.data.sources import STYLES


def shard_paths(data_dir: Path, size: int, split: str) -> list[Path]:
    paths = sorted((data_dir / "shards" / str(size)).glob(f"{split}-*.tar"))
    if not paths:
        raise FileNotFoundError(
            f"no {split} shards at {size}px in {data_dir}; run `unclip data build emoji --out {data_dir}` first"
        )
    return paths


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, H, W], RGB on white
    alpha: torch.Tensor  # uint8 [N, 1, H, W]
    meta: list[dict]
    base_ids: torch.Tensor  # long [N]: the emoji (skin tones included in their base emoji)
    style_ids: torch.Tensor  # long [N]

    def __len__(self) -> int:
        return len(self.meta)

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(
            self.images.to(device),
            self.alpha.to(device),
            self.meta,
            self.base_ids.to(device),
            self.style_ids.to(device),
        )


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def load_images(
    data_dir: Path,
    size: int,
    split: str,
    base_index: dict[str, int] | None = None,
    style_index: dict[str, int] | None = None,
) -> ImageSet:
    """`style_index` maps style names to ids; it starts with the seven emoji styles and grows with any other
    style it meets (an imported folder's "user", say). Pass the same dict to keep ids across splits."""
    imgs, alphas, metas = [], [], []
    for sample in iter_samples(shard_paths(data_dir, size, split)):
        imgs.append(_png(sample["png"]))
        alphas.append(
            _png(sample["alpha.png"]) if "alpha.png" in sample else np.full(imgs[-1].shape[:2], 255, np.uint8)
        )
        metas.append(json.loads(sample["json"]))
    base_index = base_index if base_index is not None else {}
    style_index = style_index if style_index is not None else {s: i for i, s in enumerate(STYLES)}
    for m in metas:
        base_index.setdefault(m["base_hexcode"], len(base_index))
        style_index.setdefault(m["style"], len(style_index))
    return ImageSet(
        images=torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(),
        alpha=torch.from_numpy(np.stack(alphas))[:, None].contiguous(),
        meta=metas,
        base_ids=torch.tensor([base_index[m["base_hexcode"]] for m in metas]),
        style_ids=torch.tensor([style_index[m["style"]] for m in metas]),
    )


def load_splits(data_dir: Path, size: int, splits: tuple[str, ...] | list[str]) -> ImageSet:
    """Several splits in one set, with one emoji index and one style index (the first split must exist)."""
    base_index: dict[str, int] = {}
    style_index = {s: i for i, s in enumerate(STYLES)}
    parts = []
    for i, split in enumerate(splits):
        try:
            parts.append(load_images(data_dir, size, split, base_index, style_index))
        except FileNotFoundError:
            if i == 0:
                raise
    return ImageSet(
        torch.cat([p.images for p in parts]),
        torch.cat([p.alpha for p in parts]),
        [m for p in parts for m in p.meta],
        torch.cat([p.base_ids for p in parts]),
        torch.cat([p.style_ids for p in parts]),
    )


@dataclass
class CaptionSet:
    """Every caption of every image, tokenised once: ids [M, L], owner image [M], whether it names the style."""

    ids: torch.Tensor
    mask: torch.Tensor
    owner: torch.Tensor
    names_style: torch.Tensor
    start: torch.Tensor  # [N] first caption of each image
    count: torch.Tensor  # [N]
    empty_ids: torch.Tensor  # [1, L]: the empty caption, used for classifier-free guidance
    empty_mask: torch.Tensor
    cum_weight: torch.Tensor  # [M + 1] float64: 0, then the running sum of each caption's sampling weight

    def sample(self, image_idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One random caption index per image, drawn by the captions' weights."""
        r = torch.rand(len(image_idx), generator=gen, device=gen.device).to(self.count.device, torch.float64)
        first, end = self.start[image_idx], self.start[image_idx] + self.count[image_idx]
        lo, hi = self.cum_weight[first], self.cum_weight[end]
        pick = torch.searchsorted(self.cum_weight, lo + r * (hi - lo), right=True) - 1
        return torch.minimum(torch.maximum(pick, first), end - 1)

    def to(self, device: torch.device | str) -> CaptionSet:
        return CaptionSet(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def load_captions(
    images: ImageSet,
    tokenizer,
    locales: list[str] | None = None,
    english_share: float | None = None,
    locale_weights: dict[str, float] | None = None,
) -> CaptionSet:
    """Every caption of every image in `locales` (all by default). Each image's captions are drawn uniformly,
    or, with `english_share`, its English captions that share of the time and the others the rest.
    `locale_weights` (1 for a locale not named) weighs a locale's captions against the other languages'."""
    lw = locale_weights or {}
    texts, owner, names, weights = [], [], [], []
    start, count = [], []
    for i, m in enumerate(images.meta):
        start.append(len(texts))
        langs = [loc for loc in m["captions"] if not locales or loc in locales]
        n_en = len(m["captions"]["en"]) if "en" in langs else 0
        other = sum(lw.get(loc, 1.0) * len(m["captions"][loc]) for loc in langs if loc != "en")
        for loc in langs:
            caps = m["captions"][loc]
            w = lw.get(loc, 1.0)
            if english_share is not None and n_en and other:
                w = english_share / n_en if loc == "en" else (1 - english_share) * w / other
            for c in caps:
                texts.append(c)
                owner.append(i)
                names.append(names_style(c, m["style"], loc))
                weights.append(w)
        count.append(len(texts) - start[-1])
    if not all(count):  # it would be given the caption before it (another image's)
        bare = [m.get("key", i) for i, m in enumerate(images.meta) if not count[i]]
        raise ValueError(
            f"{len(bare)} of {len(count)} images have no caption in the locales {locales} (e.g. {bare[0]}): "
            "choose data.locales that every image has ('all' reads every caption)"
        )
    ids, mask = [], []
    for at in range(0, max(len(texts), 1), 50_000):  # in chunks: one call on millions of captions needs GBs
        enc = tokenizer(
            texts[at : at + 50_000],
            padding="max_length",
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        )
        ids.append(enc.input_ids.int())
        mask.append(enc.attention_mask.bool())
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    return CaptionSet(
        ids=torch.cat(ids),
        mask=torch.cat(mask),
        owner=torch.tensor(owner),
        names_style=torch.tensor(names),
        start=torch.tensor(start),
        count=torch.tensor(count),
        empty_ids=empty.input_ids.int(),
        empty_mask=empty.attention_mask.bool(),
        cum_weight=torch.tensor([0.0, *weights], dtype=torch.float64).cumsum(0),
    )


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images_u8.float().div(127.5).sub(1.0)


def augment(
    x: torch.Tensor,
    gen: torch.Generator,
    max_shift: float = 0.08,
    scale: tuple[float, float] = (0.85, 1.05),
    max_degrees: float = 0.0,
):
    """Random scale, shift and (optionally) rotation on a white background (no flips: emoji direction
    carries meaning)."""
    n = x.shape[0]
    s = torch.empty(n, device=gen.device).uniform_(*scale, generator=gen).to(x.device)
    t = torch.empty(n, 2, device=gen.device).uniform_(-max_shift, max_shift, generator=gen).to(x.device)
    theta = torch.zeros(n, 2, 3, device=x.device)
    if max_degrees:
        a = torch.empty(n, device=gen.device).uniform_(-max_degrees, max_degrees, generator=gen)
        a = torch.deg2rad(a).to(x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(a) / s
        theta[:, 0, 1] = -torch.sin(a) / s
        theta[:, 1, 0] = torch.sin(a) / s
    else:
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, :, 2] = t
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    # shifted so that white is 0: the zero padding of grid_sample then fills with white
    out = torch.nn.functional.grid_sample(
        x - 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out + 1.0
