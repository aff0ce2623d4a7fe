"""`unclip upscale`: 4× super-resolution with the model's learned upsampler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unclip.cli import app
from unclip.cli.common import (
    CliError,
    Model,
    Out,
    Quiet,
    Threads,
    engine_for,
    errors,
    prepare_out,
    read_image,
    save_outputs,
    status,
)


@app.command("upscale")
def upscale_cmd(
    image: Annotated[Path, typer.Argument(help="Image up to 256 px on its longest side.")],
    model: Model = None,
    out: Out = Path("outputs"),
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """4× super-resolution with the model's learned upsampler (≤64 px → 256 px, ≤256 px → 1024 px)."""
    with errors():
        img = read_image(image, "IMAGE")
        if max(img.size) > 256:
            raise CliError(
                f"IMAGE {image} is {img.width}x{img.height}; upscale takes images up to 256 px "
                "on the longest side"
            )
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        with status("upscaling", quiet):
            result = engine.upscale(img)
        extra = {"source": image.name, "source_size": f"{img.width}x{img.height}"}
        save_outputs([result], out, "upscale", image.stem, extra, grid=False)
