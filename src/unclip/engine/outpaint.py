"""Outpainting: grow a canvas frame by frame, each frame overlapping content that already exists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unclip.engine import diffusion as D
from unclip.engine.errors import InvalidInput
from unclip.engine.images import flatten, to_pil

MAX_CANVAS = 4096
FRAME = 256  # the side of each frame painted (the model's native size)
OVERLAP = 0.5
# Chosen with `unclip eval outpaint` (docs/performance.md, "Outpainting seams"): frames that look at what is
# already there, with weak guidance, and fade into earlier frames, continue the picture instead of each
# drawing a new object against the frame border.
LOOK = 0.85
BAND = 24
GUIDANCE = 1.0


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
                canvas: tuple[int, int] | None, frame: int, overlap: float,
                at: tuple[int, int] | None = None) -> CanvasPlan:  # fmt: skip
    """With `canvas`, the image sits at `at` (x, y), else in the middle; extensions are refused there."""
    (cw, ch), (left, top), f, frames = _layout(image.size, left, right, top, bottom, canvas, frame, overlap, at)
    w, h = image.size
    base = Image.new("RGB", (cw, ch), (255, 255, 255))
    base.paste(flatten(image), (left, top))
    known = np.zeros((ch, cw), dtype=bool)
    known[top : top + h, left : left + w] = True
    return CanvasPlan(base, known, f, frames, (left, top))


def frame_count(size: tuple[int, int], left: int = 0, right: int = 0, top: int = 0, bottom: int = 0) -> int:
    """How many frames the engine's outpaint of an image of `size` paints (what it costs); raises InvalidInput
    as `plan_canvas` does."""
    return len(_layout(size, left, right, top, bottom, None, FRAME, OVERLAP)[3])


def _layout(size: tuple[int, int], left: int, right: int, top: int, bottom: int,
            canvas: tuple[int, int] | None, frame: int, overlap: float, at: tuple[int, int] | None = None,
            ) -> tuple[tuple[int, int], tuple[int, int], int, list[tuple[int, int]]]:  # fmt: skip
    """(canvas size, where the image sits, frame side, the frames' corners in painting order)."""
    w, h = size
    if min(w, h) < 16:
        raise InvalidInput(f"image is too small to outpaint ({w}x{h})", param="image")
    if min(left, right, top, bottom) < 0:
        raise InvalidInput("extensions must be zero or positive", param="extend")
    if canvas is not None:
        cw, ch = canvas
        if cw < w or ch < h:
            raise InvalidInput(f"canvas {cw}x{ch} is smaller than the image {w}x{h}", param="canvas")
        if left or right or top or bottom:  # a 0 could not tell "at the edge" from "not given"
            raise InvalidInput("with a canvas, place the image with `at` (x, y), not extensions", param="canvas")
        left, top = at if at is not None else ((cw - w) // 2, (ch - h) // 2)
        if min(left, top) < 0:
            raise InvalidInput("the image's place on the canvas must be zero or positive", param="canvas")
        if left + w > cw or top + h > ch:
            raise InvalidInput("the image does not fit the canvas at that offset", param="canvas")
    else:
        cw, ch = w + left + right, h + top + bottom
    if cw == w and ch == h:
        raise InvalidInput("nothing to outpaint: give an extension or a larger canvas", param="extend")
    sized_by = "canvas" if canvas is not None else "extend"  # what the caller gave: name it in the error
    if max(cw, ch) > MAX_CANVAS:
        raise InvalidInput(f"canvas {cw}x{ch} exceeds {MAX_CANVAS} px on a side", param=sized_by)
    if not 0.1 <= overlap <= 0.9:
        raise InvalidInput("overlap must be between 0.1 and 0.9", param="overlap")
    f = min(frame, cw, ch)
    if f < 64:
        raise InvalidInput("the canvas must be at least 64 px on each side", param=sized_by)
    stride = max(8, int(f * (1 - overlap)))
    frames = [(x, y) for y in _positions(ch, f, stride) for x in _positions(cw, f, stride)
              if not (left <= x and x + f <= left + w and top <= y and y + f <= top + h)]  # fmt: skip
    cx, cy = left + w / 2, top + h / 2
    frames.sort(key=lambda p: (p[0] + f / 2 - cx) ** 2 + (p[1] + f / 2 - cy) ** 2)
    return (cw, ch), (left, top), f, frames


def paint_order(plan: CanvasPlan) -> np.ndarray:
    """Which frame paints each canvas pixel: -1 for the original, k for the k-th frame of `plan.frames`.
    Frame borders (the seams) are where neighbouring pixels carry different numbers."""
    order = np.where(plan.known, -1, len(plan.frames)).astype(np.int32)
    f = plan.frame
    for k, (x, y) in enumerate(plan.frames):
        window = order[y : y + f, x : x + f]
        window[window == len(plan.frames)] = k
    return order


def blend_weights(window: np.ndarray, k: int, band: int) -> np.ndarray:
    """How much of frame k's output to take in its window: all of it where it paints, fading out over `band`
    pixels into what earlier frames painted (their content and the new frame's agree there, both decoded
    from the same latents), none over the original image."""
    fill = (window == k).astype(np.float32)
    if band <= 0:
        return fill
    near = F.avg_pool2d(torch.from_numpy(fill)[None, None], 2 * band + 1, stride=1, padding=band,
                        count_include_pad=False)[0, 0].numpy()  # fmt: skip
    ramp = np.clip(2 * near, 0, 1) * ((window >= 0) & (window < k))
    return np.maximum(fill, ramp)


def run_frames(engine, plan: CanvasPlan, prompt_embed: torch.Tensor, seed: int, guidance: float, steps: int,
               sampler: str, hook, look: float = LOOK, band: int = BAND) -> Image.Image:  # fmt: skip
    """Paint the frames in order. Each is conditioned on the prompt pulled `look` of the way towards the CLIP
    embedding of what the frame already shows, repaints exactly its new pixels in latent space (no grown
    border, so the latents it continues are the ones it keeps) and fades into earlier frames over `band` px."""
    canvas = np.asarray(plan.canvas).copy()
    order = paint_order(plan)
    f = plan.frame
    for k, (x, y) in enumerate(plan.frames):
        window = order[y : y + f, x : x + f]
        fill = window == k
        if not fill.any():
            continue
        crop = Image.fromarray(canvas[y : y + f, x : x + f])
        embed = D.slerp(prompt_embed, engine._image_embeds([crop]), look) if fill.mean() < 0.75 else prompt_embed
        out = engine._repaint(crop, fill.astype(np.float32), embed, [seed + k], f, guidance, steps, sampler, hook,
                              grow=False, alpha=blend_weights(window, k, band))  # fmt: skip
        canvas[y : y + f, x : x + f] = np.asarray(to_pil(out)[0])
    return Image.fromarray(canvas)
