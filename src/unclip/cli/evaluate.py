"""`unclip eval …`: measure a model folder on the emoji test split and holdout pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unclip.cli import app

WHAT = ("clip", "prior", "movq", "upsampler", "generation", "outpaint", "sheet")


@app.command("eval")
def eval_cmd(
    what: str = typer.Argument(..., help=f"{', '.join(WHAT)}, or all"),
    model: Path | None = typer.Option(None, help="Model folder (default: the bundled model)."),
    data: Path = typer.Option(Path("data/emoji"), help="Dataset folder from `unclip data build`."),
    n: int | None = typer.Option(
        None, help="Prompts per split for `generation` (64), canvases for `outpaint` (8), images for `upsampler` (48)."
    ),
    out: Path | None = typer.Option(None, help="Write the figures as JSON here (merged with what is there)."),
    images: Path | None = typer.Option(
        None, help="`generation`, `outpaint`: save the images in this folder; `sheet`: the PNG path."
    ),
) -> None:
    """Report retrieval, cosine, PSNR/SSIM, sharpness and Fréchet figures (with our own CLIP)."""
    from rich.console import Console

    from unclip.engine import Engine
    from unclip.evaluation import stages
    from unclip.evaluation.seams import eval_outpaint

    todo = WHAT if what == "all" else (what,)
    if any(w not in WHAT for w in todo):
        raise typer.BadParameter(f"choose from {', '.join(WHAT)} or all", param_hint="what")
    engine = Engine.load(model)
    results = json.loads(out.read_text()) if out and out.exists() else {}
    console = Console()
    for w in todo:
        if w == "sheet":
            from unclip.evaluation.sheet import contact_sheet

            path = contact_sheet(engine, data, images or Path("docs/contact-sheet.png"))
            console.print(f"contact sheet: {path} and {path.with_suffix('.md')}")
            continue
        fn = eval_outpaint if w == "outpaint" else getattr(stages, f"eval_{w}")
        kwargs = {"n": n} if n is not None and w in ("upsampler", "generation", "outpaint") else {}
        if w in ("generation", "outpaint"):
            kwargs["out_dir"] = images
        results[w] = fn(engine, data, **kwargs)
        console.print_json(json.dumps({w: results[w]}))
        if out:
            out.write_text(json.dumps(results, indent=2))
