"""Outpainting: grow a canvas frame by frame, each frame overlapping content that already exists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from unclip.engine import diffusion as D
from unclip.engine.errors import InvalidInput
from unclip.engine.images import flatten, to_pil

MAX_CANVAS = 4096


@dataclass
class CanvasPlan:
    canvas: Image.Image  # RGB, the original pasted in
    known: np.ndarray  # bool H×W
    frame: int
    frames: list[tuple[int, int]]  # top-left corners, in the order they are painted
    origin: tuple[int, int]  # where the original sits


def _positions(length: int, frame: int, stride: int) -> list[int]:
    pos = list(range(0, max(length - frame, 0) + 1, stride))
    if pos[-1] != length - frame:
        pos.append(length - frame)
    return pos


def plan_canvas(image: Image.Image, left: int, right: int, top: int, bottom: int,
                canvas: tuple[int, int] | None, frame: int, overlap: float) -> CanvasPlan:  # fmt: skip
    w, h = image.size
    if min(w, h) < 16:
        raise InvalidInput(f"image is too small to outpaint ({w}x{h})", param="image")
    if min(left, right, top, bottom) < 0:
        raise InvalidInput("extensions must be zero or positive", param="extend")
    if canvas is not None:
        cw, ch = canvas
        if cw < w or ch < h:
            raise InvalidInput(f"canvas {cw}x{ch} is smaller than the image {w}x{h}", param="canvas")
        if not (left or right or top or bottom):
            left, top = (cw - w) // 2, (ch - h) // 2
        if left + w > cw or top + h > ch:
            raise InvalidInput("the image does not fit the canvas at that offset", param="canvas")
    else:
        cw, ch = w + left + right, h + top + bottom
    if cw == w and ch == h:
        raise InvalidInput("nothing to outpaint: give an extension or a larger canvas", param="extend")
    if max(cw, ch) > MAX_CANVAS:
        raise InvalidInput(f"canvas {cw}x{ch} exceeds {MAX_CANVAS} px on a side", param="canvas")
    if not 0.1 <= overlap <= 0.9:
        raise InvalidInput("overlap must be between 0.1 and 0.9", param="overlap")
    f = min(frame, cw, ch)
    if f < 64:
        raise InvalidInput("the canvas must be at least 64 px on each side", param="canvas")
    base = Image.new("RGB", (cw, ch), (255, 255, 255))
    base.paste(flatten(image), (left, top))
    known = np.zeros((ch, cw), dtype=bool)
    known[top : top + h, left : left + w] = True
    stride = max(8, int(f * (1 - overlap)))
    frames = [(x, y) for y in _positions(ch, f, stride) for x in _positions(cw, f, stride)
              if not known[y : y + f, x : x + f].all()]  # fmt: skip
    cx, cy = left + w / 2, top + h / 2
    frames.sort(key=lambda p: (p[0] + f / 2 - cx) ** 2 + (p[1] + f / 2 - cy) ** 2)
    return CanvasPlan(base, known, f, frames, (left, top))


def run_frames(engine, plan: CanvasPlan, prompt_embed: torch.Tensor, seed: int, guidance: float, steps: int,
               sampler: str, hook) -> Image.Image:  # fmt: skip
    canvas = np.asarray(plan.canvas).copy()
    known = plan.known.copy()
    f = plan.frame
    for k, (x, y) in enumerate(plan.frames):
        window_known = known[y : y + f, x : x + f]
        if window_known.all():
            continue
        crop = Image.fromarray(canvas[y : y + f, x : x + f])
        # condition on the prompt, pulled towards what the frame already shows, for a coherent whole
        embed = D.slerp(prompt_embed, engine._image_embeds([crop]), 0.3) if window_known.mean() > 0.25 else prompt_embed
        mask = (~window_known).astype(np.float32)
        out = engine._repaint(crop, mask, embed, [seed + k], f, guidance, steps, sampler, hook)
        result = np.asarray(to_pil(out)[0])
        fill = ~window_known
        canvas[y : y + f, x : x + f][fill] = result[fill]
        known[y : y + f, x : x + f] = True
    return Image.fromarray(canvas)
