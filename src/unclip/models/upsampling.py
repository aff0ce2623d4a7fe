"""Applying a learned 4× upsampler (a UNet2DModel that refines a bicubic enlargement and predicts the
residual, optionally on the image folded into blocks): shared by the engine and the training stage."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def enlarge(low: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(low, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


def space_to_depth(model) -> int:
    """The block size an upsampler folds its input into (1 for a full-resolution UNet)."""
    f = math.isqrt(model.config.in_channels // 3)
    if 3 * f * f != model.config.in_channels or model.config.out_channels != model.config.in_channels:
        raise ValueError(f"not an RGB upsampler: {model.config.in_channels} → {model.config.out_channels} channels")
    return f


def input_multiple(model) -> int:
    """Enlargements must be a multiple of this many pixels on each side."""
    return space_to_depth(model) * 2 ** (len(model.config.block_out_channels) - 1)


def upsample(model, low: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """Apply a trained upsampler to images in [-1, 1]."""
    base = enlarge(low, scale)
    f = space_to_depth(model)
    x = F.pixel_unshuffle(base, f) if f > 1 else base
    t = torch.zeros(low.shape[0], device=low.device)
    residual = model(x, t).sample
    if f > 1:
        residual = F.pixel_shuffle(residual, f)
    return (base + residual).clamp(-1, 1)
