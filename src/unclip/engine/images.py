"""Conversions between PIL images, masks and tensors, and the checks that guard them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from unclip.engine.errors import InvalidInput
from unclip.engine.masks import REPAINT_ALPHA

SIZES = (256, 512, 1024)


def check_size(size: int, param: str = "size") -> int:
    if size not in SIZES:
        raise InvalidInput(f"size must be one of {', '.join(map(str, SIZES))}, got {size}", param=param)
    return size


def check_square(image: Image.Image, param: str = "image") -> None:
    if image.width != image.height:
        raise InvalidInput(f"{param} must be square, got {image.width}x{image.height}", param=param)
    if image.width < 16:
        raise InvalidInput(f"{param} is too small ({image.width}x{image.height}); use at least 16x16", param=param)


def to_tensor(images: list[Image.Image], size: int) -> torch.Tensor:
    """RGB images (alpha composited on white) resized to size×size, as float [-1, 1] N×3×H×W."""
    arrs = []
    for im in images:
        rgb = flatten(im)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS if rgb.width > size else Image.Resampling.BICUBIC)
        arrs.append(np.asarray(rgb, dtype=np.float32))
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).div(127.5).sub(1.0)


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    arr = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


def flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (the training background)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def repaint_mask(image: Image.Image, mask: Image.Image | None) -> np.ndarray:
    """Float H×W in {0, 1}, 1 = repaint. As in the OpenAI API, transparent pixels of the mask (or of the image
    itself when no mask is given) mark the region to repaint."""
    source, param = (mask, "mask") if mask is not None else (image, "image")
    if mask is not None and mask.size != image.size:
        raise InvalidInput(
            f"mask is {mask.width}x{mask.height} but image is {image.width}x{image.height}; they must match",
            param="mask",
        )
    if source.mode not in ("RGBA", "LA", "PA") and not (source.mode == "P" and "transparency" in source.info):
        raise InvalidInput(f"{param} has no alpha channel: transparent pixels mark the area to edit", param=param)
    alpha = np.asarray(source.convert("RGBA"))[..., 3]
    m = (alpha < REPAINT_ALPHA).astype(np.float32)
    if not m.any():
        raise InvalidInput(f"{param} is fully opaque: make the area to edit transparent", param=param)
    return m
