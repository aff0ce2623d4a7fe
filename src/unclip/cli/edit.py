"""`unclip edit`: inpainting, the transparent area of an image (or of a mask) repainted from a prompt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    Steps,
    Threads,
    check_common,
    check_prompts,
    check_square_image,
    engine_for,
    errors,
    parse_size,
    prepare_out,
    progress_bar,
    read_image,
    save_outputs,
)

if TYPE_CHECKING:
    from PIL import Image


@app.command("edit")
def edit_cmd(
    image: Annotated[
        Path, typer.Argument(help="Square image to edit; its transparent pixels are repainted.")
    ],
    prompt: Annotated[
        str, typer.Argument(help="What the repainted area should show (describe the whole image).")
    ],
    mask: Annotated[
        Path | None,
        typer.Option(
            "--mask",
            help="Mask of the same size: transparent (or black, in a greyscale mask) = repaint. "
            "Default: the image's own transparency.",
        ),
    ] = None,
    n: N = 4,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            parser=parse_size,
            metavar="SIZE",
            help="Output size: 256, 512 or 1024, or 256x256… (default: the image's, or 256).",
        ),
    ] = None,
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
    """Inpaint: repaint the transparent area of IMAGE (or of --mask); every other pixel stays as it was."""
    with errors():
        check_common(n, size, steps, guidance, sampler)
        img = read_image(image, "IMAGE")
        check_square_image(img, f"IMAGE {image}")
        m = None
        if mask is not None:
            m = read_image(mask, "--mask", grey_as_alpha=True)
            if m.size != img.size:
                raise CliError(
                    f"--mask {mask} is {m.width}x{m.height} but IMAGE is {img.width}x{img.height}; "
                    "they must be the same size"
                )
            _check_repaint_area(m, f"--mask {mask}")
        else:
            _check_repaint_area(img, f"IMAGE {image}")
        check_prompts([prompt])
        prepare_out(out)
        engine = engine_for(model, threads, quiet)
        with progress_bar("edit", quiet) as cb:
            images = engine.edit(
                img,
                prompt,
                mask=m,
                n=n,
                size=size,
                seed=seed,
                guidance=guidance,
                steps=steps,
                sampler=sampler,
                progress=cb,
            )
        extra = {"source": image.name, "mask": mask.name if mask else None}
        save_outputs(images, out, "edit", prompt, extra, grid)


def _check_repaint_area(img: Image.Image, label: str) -> None:
    """The edit area is where alpha < 128 (as the engine reads it); refuse files that have none."""
    if img.mode != "RGBA":
        raise CliError(
            f"{label} has no transparency: make the area to edit transparent"
            + (" or give --mask" if label.startswith("IMAGE") else "")
        )
    if img.getchannel("A").getextrema()[0] >= 128:
        raise CliError(f"{label} is fully opaque: make the area to edit transparent")
