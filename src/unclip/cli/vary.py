"""`unclip vary`: variations of an image, same content and style, new renderings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unclip.cli import app
from unclip.cli.common import (
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
    check_square_image,
    engine_for,
    errors,
    prepare_out,
    progress_bar,
    read_image,
    save_outputs,
)


@app.command("vary")
def vary_cmd(
    image: Annotated[Path, typer.Argument(help="Square image to make variations of.")],
    n: N = 4,
    strength: Annotated[
        float,
        typer.Option(
            "--strength",
            help="1: new images from the image's CLIP embedding alone; lower (down to "
            "0.05) starts from the image itself and stays closer to its layout.",
        ),
    ] = 1.0,
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
    """Variations of an image: same content and style, new renderings."""
    with errors():
        check_common(n, size, steps, guidance, sampler)
        if not 0.05 <= strength <= 1.0:
            raise CliError(f"--strength must be between 0.05 and 1, got {strength}")
        img = read_image(image, "IMAGE")
        check_square_image(img, f"IMAGE {image}")
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        with progress_bar("vary", quiet) as cb:
            images = engine.vary(
                img,
                n=n,
                size=size,
                strength=strength,
                seed=seed,
                guidance=guidance,
                steps=steps,
                sampler=sampler,
                progress=cb,
            )
        save_outputs(images, out, "vary", image.stem, {"source": image.name}, grid)
