"""Image and retrieval metrics: PSNR, SSIM, sharpness, top-k retrieval, Fréchet distance."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR in dB of images in [-1, 1] (N×C×H×W)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(4.0 / mse)).mean())


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> float:
    """Mean SSIM (Wang et al. 2004) on images in [-1, 1], with a Gaussian window, per channel."""
    x, y = (a.float() + 1) / 2, (b.float() + 1) / 2
    sigma = 1.5
    g = torch.exp(-((torch.arange(window) - window // 2) ** 2) / (2 * sigma**2))
    k = (g[:, None] * g[None, :]) / g.sum() ** 2
    k = k.expand(x.shape[1], 1, window, window).to(x)

    def blur(t):
        return F.conv2d(t, k, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _gradient(x: torch.Tensor) -> torch.Tensor:
    g = x.float().mean(1, keepdim=True)
    gx, gy = g[..., :, 1:] - g[..., :, :-1], g[..., 1:, :] - g[..., :-1, :]
    return (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()


def sharpness(x: torch.Tensor) -> float:
    """Mean gradient magnitude of images in [-1, 1] (ringing and noise raise it too)."""
    return float(_gradient(x).mean())


def edge_sharpness(x: torch.Tensor, reference: torch.Tensor, level: float = 0.25) -> float:
    """How steep `x` is where the reference has its edges: the mean gradient magnitude of `x` over the
    reference's edge pixels (gradient at least `level` of that image's steepest), divided by the reference's
    own (1.0: as sharp as the reference). Blur spreads an edge and lowers it; ringing away from edges does not
    raise it."""
    gx, gr = _gradient(x), _gradient(reference)
    edges = gr >= level * gr.flatten(1).amax(1).view(-1, 1, 1, 1).clamp_min(1e-6)
    return float((gx * edges).sum() / (gr * edges).sum())


def topk(similarity: torch.Tensor, correct: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """similarity: queries × candidates; correct: bool mask of the same shape (several may be right)."""
    order = similarity.argsort(dim=1, descending=True)
    hits = correct.gather(1, order)
    return {f"top{k}": float(hits[:, :k].any(1).float().mean()) for k in ks}


def pair_hits(
    similarity: torch.Tensor, base: torch.Tensor, style: torch.Tensor, target: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """For prompts asking for an (emoji, style) pair. similarity: prompts × renders; base, style: each render's
    emoji and style; target: the render each prompt asks for. Returns two bool vectors: whether the closest of
    that emoji's renders is in the asked style, and whether the emoji is among the k closest of the style's."""
    want_base, want_style = base[target], style[target]
    of_emoji = similarity.masked_fill(base[None, :] != want_base[:, None], float("-inf"))
    style_hit = style[of_emoji.argmax(1)] == want_style
    in_style = similarity.masked_fill(style[None, :] != want_style[:, None], float("-inf"))
    top = in_style.topk(min(k, similarity.shape[1]), dim=1)
    emoji_hit = ((base[top.indices] == want_base[:, None]) & top.values.isfinite()).any(1)
    return style_hit, emoji_hit


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as FID, in any feature space)."""
    from scipy import linalg

    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    try:
        covmean = linalg.sqrtm(s1 @ s2)  # (`disp` is deprecated, and gone in SciPy 1.18)
    except linalg.LinAlgError:
        return float("nan")
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
