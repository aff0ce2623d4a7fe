"""`unclip outpaint`: grow the canvas beyond an image's borders, frame by frame."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from unclip.cli import app
from unclip.cli.common import (
    MAX_N,
    CliError,
    Grid,
    Model,
    Out,
    OutpaintGuidance,
    Quiet,
    Sampler,
    Seed,
    Steps,
    Threads,
    check_common,
    check_prompts,
    engine_for,
    errors,
    prepare_out,
    progress_bar,
    random_seed,
    read_image,
    save_outputs,
)


@app.command("outpaint")
def outpaint_cmd(
    image: Annotated[Path, typer.Argument(help="Image to extend (any shape).")],
    prompt: Annotated[str, typer.Argument(help="What the whole, larger picture shows.")],
    left: Annotated[
        int | None, typer.Option("--left", help="Pixels to add on the left (with --canvas: the image's x).")
    ] = None,
    right: Annotated[int, typer.Option("--right", help="Pixels to add on the right.")] = 0,
    top: Annotated[
        int | None, typer.Option("--top", help="Pixels to add on top (with --canvas: the image's y).")
    ] = None,
    bottom: Annotated[int, typer.Option("--bottom", help="Pixels to add at the bottom.")] = 0,
    canvas: Annotated[
        str | None,
        typer.Option(
            "--canvas",
            help="Final canvas WIDTHxHEIGHT; the image is centred on each axis, or placed at --left/--top.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help=f"Number of versions (seeds), 1 to {MAX_N}.")] = 1,
    seed: Seed = None,
    guidance: OutpaintGuidance = None,
    steps: Steps = None,
    sampler: Sampler = None,
    model: Model = None,
    out: Out = Path("outputs"),
    grid: Grid = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Outpaint: grow the canvas beyond IMAGE's borders, frame by frame, keeping the original pixels."""
    with errors():
        check_common(n, None, steps, guidance, sampler)
        if min(left or 0, right, top or 0, bottom) < 0:
            raise CliError("--left/--right/--top/--bottom must be zero or positive")
        size = _parse_canvas(canvas) if canvas is not None else None
        if size is not None and (right or bottom):
            raise CliError("with --canvas, place the image with --left/--top; --right/--bottom say nothing there")
        if size is None and not (left or right or top or bottom):
            raise CliError("nothing to outpaint: give --left/--right/--top/--bottom PX or --canvas WxH")
        img = read_image(image, "IMAGE")
        at = None
        if size is not None:  # each axis centred unless its offset is given (0 included)
            at = (
                left if left is not None else (size[0] - img.width) // 2,
                top if top is not None else (size[1] - img.height) // 2,
            )
        left, top = (0, 0) if at is not None else (left or 0, top or 0)  # with a canvas, `at` places it
        check_prompts([prompt])
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        first = seed if seed is not None else random_seed()
        images = []
        for i in range(n):
            with progress_bar(f"outpaint {i + 1}/{n}" if n > 1 else "outpaint", quiet) as cb:
                images.append(
                    engine.outpaint(
                        img,
                        prompt,
                        left=left,
                        right=right,
                        top=top,
                        bottom=bottom,
                        canvas=size,
                        at=at,
                        seed=first + i,
                        guidance=guidance,
                        steps=steps,
                        sampler=sampler,
                        progress=cb,
                    )
                )
        w, h = images[0].size
        if at is not None:  # where --canvas put the image, as margins: the file says how to make it again
            left, top, right, bottom = at[0], at[1], w - img.width - at[0], h - img.height - at[1]
        extra = {
            "source": image.name,
            "left": left,
            "right": right,
            "top": top,
            "bottom": bottom,
            "canvas": f"{w}x{h}",
        }
        save_outputs(images, out, "outpaint", prompt, extra, grid)


def _parse_canvas(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise CliError(f"--canvas must look like WIDTHxHEIGHT (e.g. 512x256), got {text!r}")
    return int(m.group(1)), int(m.group(2))
