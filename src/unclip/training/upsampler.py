"""Stages `upsampler-256` and `upsampler-1024`: learned 4× super-resolution (64→256, 256→1024), trained on
renders of the same SVG at both sizes. The UNet refines a bicubic enlargement and predicts the residual."""

from __future__ import annotations

import gzip
import json
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unclip.data.render import on_white, render
from unclip.models import builders
from unclip.models.upsampling import upsample
from unclip.training.movq import gradient_l1


def _pair(args: tuple[str, int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(low crop from the full low-size render, high crop rendered as a window of the large render)."""
    svg, low_size, scale, crop, seed = args
    rng = random.Random(seed)
    high_size = low_size * scale
    cells = high_size // crop
    cx, cy = rng.randrange(cells), rng.randrange(cells)
    low = on_white(render(svg, low_size))
    lc = crop // scale
    low_crop = low[cy * lc : (cy + 1) * lc, cx * lc : (cx + 1) * lc]
    high = on_white(render(svg, crop, view=(cx / cells, cy / cells, 1 / cells)))
    return low_crop, high


def make_pairs(
    data_dir: Path,
    split: str,
    n: int,
    low_size: int,
    scales: tuple[int, ...],
    crop: int,
    seed: int,
    workers: int,
) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    with gzip.open(data_dir / "svg" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        svgs = [json.loads(line)["svg"] for line in f]
    rng = random.Random(seed)
    jobs = [(rng.choice(svgs), low_size, rng.choice(scales), crop, rng.randrange(1 << 30)) for _ in range(n)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_pair, jobs, chunksize=32))
    out = []
    for (low, high), job in zip(results, jobs, strict=True):
        out.append((torch.from_numpy(low).permute(2, 0, 1), torch.from_numpy(high).permute(2, 0, 1), job[2]))
    return out


class UpsamplerStage:
    def __init__(
        self, cfg: dict, key: str, data_dir: Path, out: Path, device, workers: int, seed: int = 0
    ) -> None:
        self.cfg, self.key, self.out = cfg[key], key, out
        self.name = key.replace("_", "-")
        c = self.cfg
        # the 256→1024 stage also learns 2× (for 512 px outputs); every scale shares one model
        self.scales = (2, 4) if c["low_size"] >= 256 else (4,)
        pairs = make_pairs(
            data_dir, "train", c["pairs"], c["low_size"], self.scales, c["crop"], seed, workers
        )
        self.groups = {
            s: (
                torch.stack([p[0] for p in pairs if p[2] == s]).to(device),
                torch.stack([p[1] for p in pairs if p[2] == s]).to(device),
            )
            for s in self.scales
        }

    def model(self) -> torch.nn.Module:
        return builders.upsampler(self.cfg)

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        scale = self.scales[step % len(self.scales)]
        lows, highs = self.groups[scale]
        dev = lows.device
        idx = torch.randint(len(lows), (batch_size,), generator=gen, device=gen.device).to(dev)
        low = lows[idx].float() / 127.5 - 1
        high = highs[idx].float() / 127.5 - 1
        # mild degradations, so the stage also copes with the decoder's slightly soft outputs
        sigma = torch.rand(batch_size, 1, 1, 1, generator=gen, device=gen.device).to(dev) * 0.6
        blurred = F.avg_pool2d(F.pad(low, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        low = low + (blurred - low) * sigma / 0.6 * (sigma > 0.3)
        low = low + 0.02 * torch.randn(low.shape, generator=gen, device=gen.device).to(dev) * (sigma > 0.45)
        pred = upsample(model, low, scale).float()
        loss = F.l1_loss(pred, high) + 0.5 * gradient_l1(pred, high)
        psnr = 10 * torch.log10(4.0 / F.mse_loss(pred, high).clamp_min(1e-8))
        return loss, {"psnr": psnr}

    def export(self, model) -> None:
        model.save_pretrained(self.out / self.name, max_shard_size="15MB")
