"""Putting a repainted area back into the image it came from without a visible edge.

The decoder draws small (64 px) and its autoencoder shifts some colours, so the repaint's own copy of the
kept pixels next to the hole differs from the real ones: pasted as it is, the hole's outline shows. As in
seamless cloning, the difference measured on a ring of kept pixels around the hole is spread smoothly into
the hole (a pull-push pyramid, which interpolates like a membrane) and added to the repaint, fading with the
distance from the edge, so that the repaint meets the real pixels at the edge and keeps its own colours and
detail inside."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

# in output pixels at 256 px, scaled with the size: the ring of kept pixels that sets the correction, how far
# into the hole it fades to 1/e, and the blur that keeps single pixels' differences (outlines) out of it
RING, FADE, SMOOTH = 3, 12.0, 1.5
WORK = 256  # the largest size the correction is worked out at (it is smooth: larger ones scale it up)


def _pool(v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pull step: weighted means over 2×2 blocks, weights summed and capped at 1."""
    pad = (0, v.shape[-1] % 2, 0, v.shape[-2] % 2)
    v, w = F.pad(v * w, pad), F.pad(w, pad)
    total = F.avg_pool2d(w, 2) * 4
    return F.avg_pool2d(v, 2) * 4 / total.clamp_min(1e-8), total.clamp(max=1.0)


def fill(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Smoothly interpolate `values` (N×C×H×W) from where `weight` (1×1×H×W, 0-1) is 1 into where it is 0;
    pixels of weight 1 keep their value."""
    levels = [(values, weight)]
    while min(levels[-1][0].shape[-2:]) > 1:
        levels.append(_pool(*levels[-1]))
    out = levels[-1][0]
    for v, w in reversed(levels[:-1]):
        up = F.interpolate(out, size=v.shape[-2:], mode="bilinear", align_corners=False)
        out = w * v + (1 - w) * up
    return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, round(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(-1, 1, 1, 2 * r + 1), groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(-1, 1, 2 * r + 1, 1), groups=x.shape[1])


def _kept_blur(x: torch.Tensor, kept: torch.Tensor, sigma: float) -> torch.Tensor:
    """A blur of `x` over the kept pixels only (the hole's fill does not bleed into it)."""
    return _blur(x * kept, sigma) / _blur(kept, sigma).clamp_min(1e-6)


def _shift(out: torch.Tensor, orig: torch.Tensor, hole: torch.Tensor, ring: float, fade: float | None,
           smooth: float, scale: float) -> torch.Tensor:  # fmt: skip
    """The correction to add to `out` inside `hole` (1×1×H×W, 0/1), at `out`'s resolution, in its pixels;
    `ring`, `fade` and `smooth` are in pixels at 256 px, `scale` the size of `out` against 256 px."""
    kept = 1 - hole
    r = max(1, round(ring * scale))
    band = F.max_pool2d(hole, 2 * r + 1, stride=1, padding=r) * kept
    s = smooth * scale
    diff = _kept_blur(orig, kept, s) - _kept_blur(out, kept, s) if s > 0 else orig - out
    shift = fill(diff * band, band)
    if fade is not None:
        inside = np.maximum(distance_transform_edt(hole[0, 0].cpu().numpy() > 0) - 1, 0)  # 0 next to the edge
        shift = shift * torch.from_numpy(np.exp(-inside / (fade * scale))).to(out)[None, None]
    return shift


def match_edges(out: torch.Tensor, orig: torch.Tensor, repaint: torch.Tensor, ring: float = RING,
                fade: float | None = FADE, smooth: float = SMOOTH) -> torch.Tensor:  # fmt: skip
    """`out` (N×3×S×S, the decoder's image) shifted inside `repaint` (1×1×S×S, 1 = repainted) so that it
    meets `orig` (1×3×S×S) at the edge of the repainted area; outside it, `out` is returned unchanged.
    Above `WORK` px the correction, smooth by construction, is worked out at that size and scaled up."""
    hole = (repaint > 0.5).to(out.dtype)
    if not 0 < float(hole.mean()) < 1:
        return out
    size = out.shape[-2:]
    if max(size) > WORK:
        small = tuple(max(1, round(s * WORK / max(size))) for s in size)
        # every pixel the hole touches, so that the ring is measured on kept pixels only
        sub = (F.interpolate(hole, size=small, mode="area") > 0).to(out.dtype)
        if float(sub.mean()) < 1:
            down = F.interpolate(out, size=small, mode="area"), F.interpolate(orig, size=small, mode="area")
            shift = _shift(*down, sub, ring, fade, smooth, WORK / 256)
            return out + F.interpolate(shift, size=size, mode="bilinear", align_corners=False) * hole
        # otherwise the kept pixels are specks thinner than a pixel there: worked out at full size
    return out + _shift(out, orig, hole, ring, fade, smooth, max(size) / 256) * hole
