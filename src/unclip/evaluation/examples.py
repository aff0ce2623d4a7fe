"""Example prompts a model draws well, measured: plain English requests for seen (emoji, style) pairs (no
typos or odd phrasings: they are shown to people), `n` images each at 256 px, kept when the judge finds the
emoji (top 5) and the style in at least `min_share` % of them. Written into the model folder as examples.json,
which the server lists with the model and the web app draws its "Surprise me" from."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unclip.evaluation.judge import Scorer, Target
from unclip.evaluation.prompts import STYLE_NAMES
from unclip.models.examples import FILE
from unclip.training.data import load_images

# requests as people write them, none a training caption's wording ("{x}, {s} style" was: "x, twemoji style")
TEMPLATES = (
    "a {x} in the style of {s} emoji",
    "{x} as {s} would draw it",
    "draw a {x} like the {s} set",
    "a {x} emoji, {s}",
)


def find_examples(
    engine: Any,
    scorer: Scorer,
    data: Path,
    candidates: int = 40,
    n: int = 8,
    min_share: float = 75.0,
    seed: int = 0,
) -> dict[str, Any]:
    import random

    rng = random.Random(seed)
    pool = sorted((m for m in load_images(data, 64, "train").meta if m["hexcode"] == m["base_hexcode"]),
                  key=lambda m: m["key"])  # fmt: skip
    tried, kept = [], []
    for i, m in enumerate(rng.sample(pool, min(candidates, len(pool)))):
        prompt = TEMPLATES[i % len(TEMPLATES)].format(x=m["label"], s=STYLE_NAMES[m["style"]][0])
        images = engine.generate(prompt, n=n, size=256, seed=seed)
        x = torch.stack(
            [
                torch.from_numpy(np.array(im.convert("RGB").resize((64, 64)))).permute(2, 0, 1)
                for im in images
            ]
        )
        r = scorer.score(scorer.predict(x), [Target(m["base_hexcode"], m["style"])] * n)
        row = {"prompt": prompt, "concept_top5": round(r["concept_top5"], 1), "style": round(r["style"], 1)}
        tried.append(row)
        if r["concept_top5"] >= min_share and r["style"] >= min_share:
            kept.append(row)
    return {
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "how": f"{n} images each at 256 px (seed {seed}), judged: concept top-5 and style in %, kept at >= {min_share}",
        "tried": len(tried),
        "examples": sorted(kept, key=lambda r: (-r["concept_top5"] - r["style"], r["prompt"])),
    }


def write_examples(model_dir: Path, result: dict[str, Any]) -> Path:
    path = Path(model_dir) / FILE
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path
