"""A contact sheet of generations for 64 prompts: seen pairs, holdout pairs and unseen emoji, in several
languages. Writes a PNG grid and a Markdown key."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unclip.data.captions import STYLE_PHRASES
from unclip.engine import Engine
from unclip.training.data import load_images

LOCALES = ("de", "fr", "es", "ja", "zh", "ru", "pt", "it")


def sheet_prompts(data: Path, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, kind) for 24 seen pairs, 16 holdout pairs, 8 unseen test emoji and 16 non-English prompts."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    metas = {s: load_images(data, 64, s).meta for s in ("train", "holdout", "test")}

    def pick(split: str, k: int, kind: str, locales: tuple[str, ...] = ("en",)) -> None:
        for m in rng.sample(metas[split], k):
            loc = rng.choice(locales)
            label = m["label"] if loc == "en" else m["captions"].get(loc, [m["label"]])[0]
            phrase = rng.choice(STYLE_PHRASES[m["style"]])
            out.append((f"{label}, {phrase}", f"{kind} ({m['style']}{'' if loc == 'en' else ', ' + loc})"))

    pick("train", 24, "seen pair")
    pick("holdout", 16, "holdout pair")
    pick("test", 8, "unseen emoji")
    pick("train", 8, "seen pair", LOCALES)
    pick("holdout", 8, "holdout pair", LOCALES)
    return out


def contact_sheet(engine: Engine, data: Path, out_png: Path, thumb: int = 96, seed: int = 0) -> Path:
    prompts = sheet_prompts(data, seed)
    cols = 8
    rows = (len(prompts) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * thumb, rows * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (prompt, _) in enumerate(prompts):
        im = engine.generate(prompt, n=1, size=256, seed=seed + i)[0].resize(
            (thumb, thumb), Image.Resampling.LANCZOS
        )
        x, y = (i % cols) * thumb, (i // cols) * thumb
        sheet.paste(im, (x, y))
        draw.text((x + 2, y + 1), str(i + 1), fill=(90, 90, 90), font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, optimize=True)
    lines = [
        f"# Contact sheet: {engine.name}",
        "",
        f"![contact sheet]({out_png.name})",
        "",
        "Generated at 256×256 with the engine's defaults, seed = 0 + cell − 1; shown at 96 px.",
        "",
        "| # | prompt | kind |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {i + 1} | {p} | {k} |" for i, (p, k) in enumerate(prompts)]
    out_png.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_png
