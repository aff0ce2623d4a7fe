"""Random edit masks that look like real edits: brush strokes, boxes, outpainting borders and full masks.
1 marks the region to repaint."""

from __future__ import annotations

import torch


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=gen.device)


def random_masks(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    dev = gen.device
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, size, device=dev), torch.linspace(0, 1, size, device=dev), indexing="ij"
    )
    kind = (_rand(gen, n) * 4).long()  # 0 brush, 1 box, 2 outpaint border, 3 full

    # brush: the union of 3 thick segments
    p0, p1 = _rand(gen, n, 3, 2), _rand(gen, n, 3, 2)
    width = 0.04 + 0.12 * _rand(gen, n, 3)
    d = p1 - p0
    px = torch.stack([xs, ys], -1)[None, None]  # 1,1,H,W,2
    tt = ((px - p0[:, :, None, None]) * d[:, :, None, None]).sum(-1) / (d * d).sum(-1).clamp_min(1e-6)[
        ..., None, None
    ]
    closest = p0[:, :, None, None] + tt.clamp(0, 1)[..., None] * d[:, :, None, None]
    brush = (((px - closest) ** 2).sum(-1).sqrt() < width[..., None, None]).any(1)

    # box
    c, half = _rand(gen, n, 2), 0.1 + 0.3 * _rand(gen, n, 2)
    box = ((xs[None] - c[:, 0, None, None]).abs() < half[:, 0, None, None]) & (
        (ys[None] - c[:, 1, None, None]).abs() < half[:, 1, None, None]
    )

    # outpainting: the known content is a window touching some edges; the rest is to be painted
    lo = _rand(gen, n, 2) * 0.5 * (_rand(gen, n, 2) < 0.5)
    hi = 1 - _rand(gen, n, 2) * 0.5 * (_rand(gen, n, 2) < 0.5)
    inside = (xs[None] >= lo[:, 0, None, None]) & (xs[None] <= hi[:, 0, None, None])
    inside &= (ys[None] >= lo[:, 1, None, None]) & (ys[None] <= hi[:, 1, None, None])
    border = ~inside

    full = torch.ones_like(brush)
    masks = torch.stack([brush, box, border, full], 1)
    return masks[torch.arange(n, device=dev), kind].float()[:, None]


def latent_keep_mask(mask: torch.Tensor, latent_size: int) -> torch.Tensor:
    """The engine's view of a pixel mask at latent size: 1 = keep; a latent pixel that covers any of the
    area to repaint is repainted, and the repaint region grown by one latent pixel, as diffusers'
    `prepare_mask` does for KandinskyV22InpaintPipeline."""
    repaint = torch.nn.functional.interpolate(mask, size=(latent_size, latent_size), mode="area")
    repaint = (repaint > 0).float()  # any covered pixel: a small hole is repainted too
    repaint = torch.nn.functional.max_pool2d(repaint, 3, stride=1, padding=1)
    return 1.0 - repaint
