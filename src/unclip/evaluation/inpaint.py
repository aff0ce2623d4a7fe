"""Edits judged: real renders with part of them made transparent (the OpenAI way to edit without a mask),
repainted by the model from the pair's caption. The independent judge reads the real render (the ceiling),
what the hole leaves of it on white (the floor: what the model is given) and the repainted image; the seam
along the hole's edge is measured as the outpainting seams are, against the real render's own jumps along
the same line. The inpainting decoder trained on every non-holdout image: the holdout pairs are the unseen
ones (the seen pairs' renders are training images)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unclip.data.shards import iter_samples
from unclip.engine import Engine
from unclip.evaluation.cascade import BASE_GROUPS
from unclip.evaluation.judge import Scorer, Target, figure_cells
from unclip.evaluation.prompts import EvalPrompt, build_prompts
from unclip.evaluation.seams import discontinuity, pair_mean
from unclip.evaluation.stages import caption
from unclip.training.data import load_images, shard_paths

SIZE = 256
MASKS = ("centre", "right half")  # alternating: a quarter of the image inside, half of it to one side
ROWS = ("real", "masked", "edited")


def repaint_area(kind: str, size: int = SIZE) -> np.ndarray:
    """Boolean H×W, True where the model repaints."""
    area = np.zeros((size, size), dtype=bool)
    if kind == "centre":
        area[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    elif kind == "right half":
        area[:, size // 2 :] = True
    else:
        raise ValueError(f"unknown mask {kind!r}; choose from {', '.join(MASKS)}")
    return area


def with_hole(image: Image.Image, area: np.ndarray) -> Image.Image:
    """The render as an edit's input: transparent (and white) where the model repaints, so that nothing of
    what was there reaches it (a separate mask over an opaque image lets the engine fade the edit into the
    pixels under the mask's edge)."""
    rgb = np.asarray(image.convert("RGB")).copy()
    rgb[area] = 255
    alpha = np.where(area, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def render_size(data: Path) -> int:
    """SIZE when the dataset has renders of that size, else its largest (enlarged to SIZE: a dataset built
    for the text side has 64 px renders only)."""
    sizes = sorted(int(p.name) for p in (data / "shards").iterdir() if p.name.isdigit())
    return SIZE if SIZE in sizes else sizes[-1]


def _renders(data: Path, keys: set[str]) -> dict[str, Image.Image]:
    """SIZE px renders of these dataset keys (streamed: only these are decoded)."""
    found: dict[str, Image.Image] = {}
    size = render_size(data)
    for split in ("train", "holdout"):
        for sample in iter_samples(shard_paths(data, size, split)):
            key = json.loads(sample["json"])["key"]
            if key in keys:
                im = Image.open(io.BytesIO(sample["png"])).convert("RGB")
                found[key] = im if size == SIZE else im.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return found


def _groups(prompts: list[EvalPrompt]) -> dict[str, list[int]]:
    g: dict[str, list[int]] = {name: [] for name in BASE_GROUPS}
    for i, p in enumerate(prompts):
        g["non-English" if p.locale != "en" else p.kind].append(i)
    return g


def _tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2)


def eval_inpaint(engine: Engine, scorer: Scorer, data: Path, n: int = 80, seed: int = 0,
                 out_dir: Path | None = None) -> dict:  # fmt: skip
    """n prompts per kind (seen, holdout pairs, as the cascade picks them; non-English ones apart), each real
    render repainted once (seed + index) inside MASKS[index % 2], from its caption in the prompt's language."""
    seen, holdout = load_images(data, 64, "train").meta, load_images(data, 64, "holdout").meta
    prompts = build_prompts(seen, holdout, n_per_kind=n, seed=seed)
    metas = {m["key"]: m for m in (*seen, *holdout)}
    renders = _renders(data, {p.key for p in prompts})
    real, masked, edited, seams, own = [], [], [], [], []
    for i, p in enumerate(prompts):
        image = renders[p.key]
        area = repaint_area(MASKS[i % len(MASKS)])
        hole = with_hole(image, area)
        out = engine.edit(hole, caption(metas[p.key], p.locale), size=SIZE, seed=seed + i)[0]
        real.append(image)
        masked.append(hole.convert("RGB"))
        edited.append(out)
        seams.append(discontinuity(out, area.astype(np.int32)))
        own.append(discontinuity(image, area.astype(np.int32)))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            out.save(out_dir / f"edit_{i:03d}.png")
    targets = [Target(p.base_hexcode, p.style) for p in prompts]
    groups = _groups(prompts)
    table: dict[str, dict] = {}
    for row, images in zip(ROWS, (real, masked, edited), strict=True):
        out = scorer.predict(_tensor(images))
        table[row] = {}
        for name, idx in groups.items():
            if not idx:
                continue
            sub = out.take(idx)
            table[row][name] = scorer.score(sub, [targets[i] for i in idx])
    edge, base = pair_mean(seams), pair_mean(own)  # pair-weighted means over the images
    seam = {f"{m}_ratio": edge[m] / max(base[m], 1e-9) for m in ("colour", "gradient", "content_colour",
                                                                  "content_gradient")}  # fmt: skip
    return {
        "model": str(engine.c.root),
        "size": SIZE,
        "render_size": render_size(data),
        "masks": list(MASKS),
        "prompts": {g: len(i) for g, i in groups.items()},
        "rows": table,
        "seam_vs_real": seam,
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| row | pairs | n | concept top-1 | concept top-5 | style | group |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row, groups in result["rows"].items():
        for name, f in groups.items():
            lines.append(f"| {row} | {name} | {figure_cells(f)} |")
    s = result["seam_vs_real"]
    lines.append("")
    lines.append(
        "Jumps across the hole's edge against the real render's along the same line (1.0 = as in the real "
        f"render): colour {s['colour_ratio']:.2f}, gradient {s['gradient_ratio']:.2f}, where there is content "
        f"{s['content_colour_ratio']:.2f} / {s['content_gradient_ratio']:.2f}."
    )
    return "\n".join(lines)
