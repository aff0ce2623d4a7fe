"""Stage `judge`: the independent classifier that `unclip eval judge` and `unclip eval cascade` score images
with. It trains on real renders only (never on generated images, and shares no weights with our CLIP), with
augmentations that make it judge drawings rather than pixels: scale, shift, rotation, blur, colour jitter,
JPEG, lost resolution and noise. The holdout pairs and a few more (emoji, style) pairs ("probe" pairs) stay
out of its training, so that its report can say how it scores a drawing it has not memorised."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unclip.data.build import SPLITS
from unclip.data.sources import STYLES
from unclip.models.judge import Judge, is_probe_pair
from unclip.training.data import ImageSet, augment, load_splits, to_unit


def load_all(data_dir: Path, size: int = 64) -> ImageSet:
    """Every split in one set, with one emoji index and one style index."""
    return load_splits(data_dir, size, SPLITS)


def judge_parts(images: ImageSet, probe_percent: float) -> list[str]:
    """Per image: "unseen" (a holdout or probe pair: the judge never trains on it), "twin" (drawn exactly as an
    unseen image, under another emoji's name: some sets draw two emoji alike; left out of training and of the
    report, or the unseen figures would be of drawings the judge has learnt) or "trained"."""
    import hashlib

    unseen = [m["split"] == "holdout" or is_probe_pair(m["base_hexcode"], m["style"], probe_percent)
              for m in images.meta]  # fmt: skip
    drawing = [
        (m["style"], hashlib.sha1(images.images[i].numpy().tobytes() + images.alpha[i].numpy().tobytes()).digest())
        for i, m in enumerate(images.meta)
    ]
    held = {d for d, u in zip(drawing, unseen, strict=True) if u}
    return ["unseen" if u else "twin" if d in held else "trained" for d, u in zip(drawing, unseen, strict=True)]


def judge_classes(images: ImageSet) -> dict[str, list]:
    """The names of every output: emoji in index order with their English label and group, groups, styles."""
    n = int(images.base_ids.max()) + 1
    concept: list[str] = [""] * n
    labels: list[str] = [""] * n
    group_of: list[str] = [""] * n
    for m, b in zip(images.meta, images.base_ids.tolist(), strict=True):
        own = m["hexcode"] == m["base_hexcode"]
        if not concept[b] or own:
            concept[b] = m["base_hexcode"]
            labels[b] = m["label"] if own else m["label"].split(":")[0]
            group_of[b] = m["group"]
    groups = sorted(set(group_of))
    styles = sorted(
        {m["style"] for m in images.meta},
        key=lambda s: (s not in STYLES, STYLES.index(s) if s in STYLES else 0, s),
    )
    return {
        "concept": concept,
        "labels": labels,
        "concept_group": [groups.index(g) for g in group_of],
        "group": groups,
        "style": styles,
    }


def jpeg_copies(images: torch.Tensor, seed: int, quality: tuple[int, int] = (25, 90)) -> torch.Tensor:
    """Each image once through JPEG at a random quality (uint8 N×3×H×W in and out)."""
    rng = random.Random(seed)
    out = np.empty(images.shape, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i, a in enumerate(arr):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=rng.randint(*quality))
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return torch.from_numpy(out)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.empty(n, device=gen.device).uniform_(lo, hi, generator=gen).to(device)


def _chance(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device).to(device) < p


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: int = 7) -> torch.Tensor:
    """A separable Gaussian blur with one sigma per image; the border is padded with white."""
    n, c, h, w = x.shape
    r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, k]
    y = F.pad(x.reshape(1, n * c, h, w) - 1, (k // 2,) * 4) + 1  # white padding in [-1, 1]
    y = F.conv2d(y, kern[:, None, None, :], groups=n * c)
    return F.conv2d(y, kern[:, None, :, None], groups=n * c).view(n, c, h, w)


def colour_jitter(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Mild brightness, contrast, saturation and hue changes (colour tells emoji apart: a red heart is not a
    green one, so hue moves by at most ±0.04 turns)."""
    n = x.shape[0]
    y = (x + 1) / 2
    bright = _uniform(n, -0.08, 0.08, gen, x.device) * strength
    contrast = 1 + _uniform(n, -0.15, 0.15, gen, x.device) * strength
    sat = 1 + _uniform(n, -0.25, 0.25, gen, x.device) * strength
    hue = _uniform(n, -0.04, 0.04, gen, x.device) * strength * 2 * math.pi
    mean = y.mean((1, 2, 3), keepdim=True)
    y = (y - mean) * contrast.view(-1, 1, 1, 1) + mean + bright.view(-1, 1, 1, 1)
    # hue rotation and saturation in YIQ
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device
    )
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(hue), torch.sin(hue)
    rot = torch.zeros(n, 3, 3, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos * sat, -sin * sat, sin * sat, cos * sat
    m = from_yiq @ rot @ to_yiq  # [n, 3, 3]
    y = torch.einsum("nij,njhw->nihw", m, y)
    return (y.clamp(0, 1) * 2 - 1).contiguous()


def judge_augment(clean: torch.Tensor, jpeg: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 renders (and their JPEG copies) → augmented float images in [-1, 1]."""
    n, dev = clean.shape[0], clean.device
    x = to_unit(_where(_chance(n, 0.25, gen, dev), jpeg, clean))
    x = augment(x, gen, max_shift=0.08, scale=(0.8, 1.1), max_degrees=8.0)
    x = _where(_chance(n, 0.7, gen, dev), colour_jitter(x, gen), x)
    x = _where(_chance(n, 0.3, gen, dev), gaussian_blur(x, _uniform(n, 0.4, 1.3, gen, dev)), x)
    low = int(torch.randint(20, 48, (1,), generator=gen, device=gen.device))
    small = F.interpolate(x, size=(low, low), mode="area")
    x = _where(_chance(n, 0.15, gen, dev), F.interpolate(small, size=x.shape[-2:], mode="bilinear"), x)
    noise = torch.randn(x.shape, generator=gen, device=gen.device).to(dev)
    sigma = _uniform(n, 0.0, 0.06, gen, dev).view(-1, 1, 1, 1)
    x = _where(_chance(n, 0.2, gen, dev), (x + sigma * noise).clamp(-1, 1), x)
    return x.contiguous(memory_format=torch.channels_last)


class JudgeStage:
    name = "judge"

    def __init__(self, cfg: dict, data_dir: Path, out: Path, device: torch.device) -> None:
        self.cfg, self.out = cfg, out
        self.section = cfg["judge"]
        images = load_all(data_dir)
        self.classes = judge_classes(images)
        probe_percent = self.section.get("probe_percent", 4)
        parts = judge_parts(images, probe_percent)
        idx = torch.tensor([i for i, part in enumerate(parts) if part == "trained"])
        self.n_left_out = len(parts) - len(idx)
        self.images = images.images[idx].to(device)
        self.jpeg = jpeg_copies(images.images[idx], cfg["seed"]).to(device)
        self.base = images.base_ids[idx].to(device)
        self.style = images.style_ids[idx].to(device)
        concept_group = torch.tensor(self.classes["concept_group"])
        self.group = concept_group[images.base_ids[idx]].to(device)
        self.metadata = {
            "probe_percent": probe_percent,
            "trained_on": {"images": len(idx), "left_out": self.n_left_out, "twins_left_out": parts.count("twin")},
        }

    def model(self) -> torch.nn.Module:
        torch.manual_seed(self.cfg["seed"])
        return Judge(self.section["arch"], self.classes).to(memory_format=torch.channels_last)

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        idx = torch.randint(len(self.images), (batch_size,), generator=gen, device=gen.device).to(
            self.images.device
        )
        x = judge_augment(self.images[idx], self.jpeg[idx], gen)
        out = model(x)
        smooth = self.section.get("label_smoothing", 0.1)
        concept = F.cross_entropy(out.concept.float(), self.base[idx], label_smoothing=smooth)
        style = F.cross_entropy(out.style.float(), self.style[idx], label_smoothing=smooth)
        group = F.cross_entropy(out.group.float(), self.group[idx], label_smoothing=smooth)
        loss = concept + 0.5 * style + 0.25 * group
        with torch.no_grad():
            info = {
                "concept_acc": (out.concept.argmax(1) == self.base[idx]).float().mean(),
                "style_acc": (out.style.argmax(1) == self.style[idx]).float().mean(),
            }
        return loss, info

    def export(self, model) -> None:
        model.to(memory_format=torch.contiguous_format).save(self.out, self.metadata)
