"""`unclip blend`: prompts and images mixed in CLIP space, with the parsing of their `ITEM=WEIGHT` list."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from unclip.cli import app
from unclip.cli.common import (
    IMAGE_SUFFIXES,
    CliError,
    Grid,
    Guidance,
    Model,
    N,
    Out,
    Quiet,
    Sampler,
    Seed,
    Size,
    Steps,
    Threads,
    check_common,
    check_prompts,
    check_square_image,
    engine_for,
    errors,
    prepare_out,
    progress_bar,
    read_image,
    save_outputs,
)

BLEND_HELP = (
    "Blend prompts and images in CLIP space, e.g.\n\n"
    '    unclip blend "a cat=0.7" dog.png=0.3\n\n'
    "Each ITEM is a prompt or an image file (an existing file is an image), optionally followed by "
    '=WEIGHT or :WEIGHT, read as a weight only when it is a number ("flag: France" stays a prompt). '
    "Weights are relative (normalised to sum 1) and default to 1. "
    "Or give --item/--weight pairs, taken literally:\n\n"
    '    unclip blend --item "a cat" --weight 0.5 --item cat.png --weight 0.5\n\n'
    "Two items are slerped (as DALL·E 2 interpolates), more are averaged."
)


_WEIGHT = re.compile(r"^(?P<item>.+?)\s*[=:]\s*(?P<w>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$", re.S)


def parse_blend_items(items: Sequence[str], weights: Sequence[float]) -> list[tuple[str | Path, float]]:
    """(prompt or image path, weight) pairs. An item is `TEXT_OR_PATH`, `TEXT_OR_PATH=WEIGHT` or
    `TEXT_OR_PATH:WEIGHT` (the suffix counts as a weight only when it is a number); with --weight given once
    per item, items are taken literally. Missing weights are 1; weights are relative (normalised)."""
    items = [it for it in items if it is not None]
    if weights and len(weights) != len(items):
        raise CliError(
            f"give --weight once per item or not at all: {len(items)} items, {len(weights)} weights"
        )
    out: list[tuple[str | Path, float]] = []
    for i, raw in enumerate(items):
        text, weight = raw, 1.0
        if weights:
            weight = float(weights[i])
        elif not Path(raw).is_file():
            m = _WEIGHT.match(raw)
            if m:
                text, weight = m.group("item"), float(m.group("w"))
        if not math.isfinite(weight) or weight < 0:
            raise CliError(f"blend weights must be zero or positive numbers, got {weight} for {text!r}")
        path = Path(text).expanduser()
        if path.is_file():
            out.append((path, weight))
        elif path.is_dir() and (os.sep in text or text.lower().endswith(IMAGE_SUFFIXES)):
            raise CliError(f"blend item {text!r}: a folder, not an image file")
        elif text.lower().endswith(IMAGE_SUFFIXES) and "\n" not in text:
            raise CliError(f"blend item {text!r}: no such file")
        else:
            out.append((text.strip(), weight))
    if len(out) < 2:
        raise CliError(f"blend needs at least two items, got {len(out)}")
    if sum(w for _, w in out) <= 0:
        raise CliError("blend weights must not all be zero")
    return out


@app.command("blend", help=BLEND_HELP, short_help="Blend prompts and images in CLIP space.")
def blend_cmd(
    items: Annotated[
        list[str] | None, typer.Argument(help="ITEM[=WEIGHT]: a prompt or an image path, with a weight.")
    ] = None,
    item: Annotated[list[str] | None, typer.Option("--item", help="An item (repeat); after ITEMS.")] = None,
    weight: Annotated[
        list[float] | None, typer.Option("--weight", help="One weight per item, in order (repeat).")
    ] = None,
    n: N = 4,
    size: Size = 256,
    seed: Seed = None,
    guidance: Guidance = None,
    steps: Steps = None,
    sampler: Sampler = None,
    model: Model = None,
    out: Out = Path("outputs"),
    grid: Grid = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    with errors():
        check_common(n, size, steps, guidance, sampler)
        parsed = parse_blend_items([*(items or []), *(item or [])], weight or [])
        check_prompts([it for it, _ in parsed if isinstance(it, str)])
        engine_items: list[tuple[Any, float]] = []
        for it, w in parsed:
            if isinstance(it, Path):
                img = read_image(it, "blend item")
                check_square_image(img, f"blend item {it}")
                engine_items.append((img, w))
            else:
                engine_items.append((it, w))
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        with progress_bar("blend", quiet) as cb:
            images = engine.blend(
                engine_items,
                n=n,
                size=size,
                seed=seed,
                guidance=guidance,
                steps=steps,
                sampler=sampler,
                progress=cb,
            )
        labels = [it.name if isinstance(it, Path) else it for it, _ in parsed]
        extra = {"items": labels, "weights": [w for _, w in parsed]}
        save_outputs(images, out, "blend", " ".join(labels), extra, grid)
