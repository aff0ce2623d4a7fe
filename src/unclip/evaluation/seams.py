"""Seams in outpainted canvases: how much colour and gradient jump where one frame's pixels meet another's,
against the same jumps between neighbouring pixels of an unmasked generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unclip.engine import Engine
from unclip.engine.outpaint import CanvasPlan, paint_order, plan_canvas
from unclip.evaluation.stages import caption, sample_indices
from unclip.training.data import load_images

# a pixel pair is "content" when one of the four pixels around it is visibly off the white background
CONTENT_LEVEL = 235
# the frames eval_outpaint plans its seams with and asks the engine to paint with
FRAME, OVERLAP = 256, 0.5


def _pairs(img: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every neighbour pair (p, q) along `axis` with one more pixel on each side (o, p | q, r):
    the colour jump |q - p|, the gradient jump |(r - q) - (p - o)| (both mean over RGB) and whether it
    shows content. Arrays are indexed by p's position, with the first and last two positions dropped."""
    a = np.moveaxis(img.astype(np.float32), axis, 0)
    o, p, q, r = a[:-3], a[1:-2], a[2:-1], a[3:]
    colour = np.abs(q - p).mean(-1)
    gradient = np.abs((r - q) - (p - o)).mean(-1)
    content = np.minimum(np.minimum(o, p), np.minimum(q, r)).min(-1) < CONTENT_LEVEL
    return colour, gradient, content


def discontinuity(image: Image.Image | np.ndarray, order: np.ndarray | None = None,
                  across: bool = True) -> dict[str, float]:  # fmt: skip
    """Mean colour and gradient jump (0-255 levels) across the seams of `order` (neighbours painted by
    different frames; with `across=False`, neighbours painted by the same frame), or between all neighbours
    when `order` is None; also over the pairs that show content only (not white on white)."""
    img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    sums = {"colour": 0.0, "gradient": 0.0, "pairs": 0, "content_colour": 0.0, "content_gradient": 0.0,
            "content_pairs": 0}  # fmt: skip
    for axis in (0, 1):
        colour, gradient, content = _pairs(img, axis)
        if order is None:
            sel = np.ones(colour.shape, dtype=bool)
        else:
            o = np.moveaxis(order, axis, 0)
            sel = (o[1:-2] != o[2:-1]) == across
        for prefix, mask in (("", sel), ("content_", sel & content)):
            sums[f"{prefix}colour"] += float(colour[mask].sum())
            sums[f"{prefix}gradient"] += float(gradient[mask].sum())
            sums[f"{prefix}pairs"] += int(mask.sum())
    out = {}
    for prefix in ("", "content_"):
        n = max(sums[f"{prefix}pairs"], 1)
        out[f"{prefix}colour"] = sums[f"{prefix}colour"] / n
        out[f"{prefix}gradient"] = sums[f"{prefix}gradient"] / n
        out[f"{prefix}pairs"] = sums[f"{prefix}pairs"]
    return out


def pair_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Pair-weighted means over several images."""
    out = {}
    for prefix in ("", "content_"):
        n = sum(r[f"{prefix}pairs"] for r in rows)
        out[f"{prefix}pairs"] = n
        for k in ("colour", "gradient"):
            out[f"{prefix}{k}"] = sum(r[f"{prefix}{k}"] * r[f"{prefix}pairs"] for r in rows) / max(n, 1)
    return out


def naive_paste(plan: CanvasPlan, order: np.ndarray, tiles: list[Image.Image]) -> Image.Image:
    """The same canvas and frame order, each frame filled from an independent generation with no regard for
    what it borders: what seams look like, to show the measure sees them."""
    canvas = np.asarray(plan.canvas).copy()
    f = plan.frame
    for k, (x, y) in enumerate(plan.frames):
        window = order[y : y + f, x : x + f] == k
        tile = np.asarray(tiles[k % len(tiles)].convert("RGB").resize((f, f)))
        canvas[y : y + f, x : x + f][window] = tile[window]
    return Image.fromarray(canvas)


def eval_outpaint(engine: Engine, data: Path, n: int = 8, canvas: tuple[int, int] = (1024, 512), seed: int = 0,
                  out_dir: Path | None = None) -> dict:  # fmt: skip
    """For n test-split prompts: generate a 256 px start image, outpaint it to `canvas`, and compare the jumps across
    the frame borders with those between all neighbouring pixels of unmasked generations of the prompt and
    with a naive paste of independent generations into the same frames."""
    imgs = load_images(data, 64, "test")
    prompts = [caption(imgs.meta[i]) for i in sample_indices(len(imgs), n, seed)]
    rows: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("outpaint", "outpaint_interior", "unmasked", "naive")
    }
    frames_per_canvas = 0
    for i, prompt in enumerate(prompts):
        gens = engine.generate(prompt, n=4, size=256, seed=seed + 100 * i)
        start, others = gens[0], gens[1:]
        plan = plan_canvas(start, 0, 0, 0, 0, canvas, frame=FRAME, overlap=OVERLAP)
        order = paint_order(plan)
        frames_per_canvas = len(plan.frames)
        result = engine.outpaint(start, prompt, canvas=canvas, seed=seed + 100 * i, frame=FRAME, overlap=OVERLAP)
        naive = naive_paste(plan, order, others)
        rows["outpaint"].append(discontinuity(result, order))
        rows["outpaint_interior"].append(discontinuity(result, order, across=False))
        rows["naive"].append(discontinuity(naive, order))
        rows["unmasked"].extend(discontinuity(g) for g in gens)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            result.save(out_dir / f"outpaint_{i}.png")
            naive.save(out_dir / f"naive_{i}.png")
    summary = {k: pair_mean(v) for k, v in rows.items()}
    base = summary["unmasked"]
    for k in ("outpaint", "outpaint_interior", "naive"):
        for m in ("colour", "gradient", "content_colour", "content_gradient"):
            summary[k][f"{m}_ratio"] = summary[k][m] / max(base[m], 1e-9)
    return {"prompts": prompts, "canvas": list(canvas), "frames_per_canvas": frames_per_canvas, **summary}
