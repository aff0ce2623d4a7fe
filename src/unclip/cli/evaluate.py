"""`unclip eval …`: measure a model folder on the emoji test split and holdout pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from unclip.cli import app

WHAT = (
    "clip",
    "prior",
    "movq",
    "upsampler",
    "generation",
    "outpaint",
    "sheet",
    "judge",
    "cascade",
    "inpaint",
    "watermark",
    "examples",
)
NEEDS_NO_MODEL = ("judge",)


@app.command("eval")
def eval_cmd(
    what: str = typer.Argument(..., help=f"{', '.join(WHAT)}, or all"),
    model: Path | None = typer.Option(None, help="Model folder (default: the bundled model)."),
    data: Path = typer.Option(Path("data/emoji"), help="Dataset folder from `unclip data build`."),
    n: int | None = typer.Option(
        None,
        min=1,
        help="Prompts per split for `generation` (64), canvases for `outpaint` (8), images for `upsampler` "
        "(48), prompts per kind (seen, holdout) for `cascade` (160) and `inpaint` (80), images per sample for "
        "`judge` (300), "
        "images for `watermark` (32), candidate prompts for `examples` (40).",
    ),
    out: Path | None = typer.Option(None, help="Write the figures as JSON here (merged with what is there)."),
    images: Path | None = typer.Option(
        None,
        help="`generation`, `outpaint`, `watermark`, `inpaint`: save the images in this folder; `sheet`: the PNG "
        "path, or a folder for contact-sheet.png (default: docs/contact-sheet.png for the bundled model, "
        "./contact-sheet.png for another); `cascade`: the folder for its contact sheet, prompts and figures.",
    ),
    judge: Path | None = typer.Option(
        None, help="`judge`, `cascade`, `inpaint`: the judge folder (default: models/judge-emoji)."
    ),
    rows: str | None = typer.Option(
        None, help="`cascade`: the rows to compute, comma-separated (default: all; e.g. autoencoder)."
    ),
    prior_candidates: int | None = typer.Option(
        None,
        min=1,
        max=16,
        help="Prior samples per image, the closest to the text kept (default: the engine's).",
    ),
    decode_candidates: int | None = typer.Option(
        None,
        min=1,
        max=16,
        help="Images decoded per image at the decoder's size, the closest to the text kept (default: the "
        "engine's).",
    ),
    guidance: float | None = typer.Option(
        None, min=0.0, max=30.0, help="The decoder's classifier-free guidance (default: the engine's)."
    ),
    prior_guidance: float | None = typer.Option(
        None, min=0.0, max=30.0, help="The prior's classifier-free guidance (default: the engine's)."
    ),
) -> None:
    """Report retrieval, cosine, PSNR/SSIM, sharpness and Fréchet figures (with our own CLIP), and the
    independent judge's figures (`judge`: its own ceiling and floor; `cascade`: what each stage loses;
    `inpaint`: real renders partly repainted by the edit model), and
    the invisible watermark's strength and survival on the model's images (`watermark`); `examples` writes the
    prompts the model draws well, judged, into its folder (examples.json: the web app's "Surprise me")."""
    from rich.console import Console

    todo = tuple(w for w in WHAT if w != "examples") if what == "all" else (what,)  # examples writes a file
    if any(w not in WHAT for w in todo):
        raise typer.BadParameter(f"choose from {', '.join(WHAT)} or all", param_hint="what")
    if out is not None:  # before minutes of evaluation, not after
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise typer.BadParameter(f"cannot write there: {exc.strerror or exc}", param_hint="--out") from exc
    engine = None
    if any(w not in NEEDS_NO_MODEL for w in todo):
        from unclip.engine import Engine

        engine = Engine.load(model)
        if prior_candidates:
            engine.prior_candidates = prior_candidates
        if decode_candidates:
            engine.decode_candidates = decode_candidates
        if guidance is not None:
            engine.guidance = guidance
        if prior_guidance is not None:
            engine.prior_guidance = prior_guidance
    results = json.loads(out.read_text()) if out and out.exists() else {}
    console = Console()
    for w in todo:
        if w == "sheet":
            from unclip.evaluation.sheet import contact_sheet

            path = contact_sheet(engine, data, _sheet_path(images, model, len(todo) > 1))
            console.print(f"contact sheet: {path} and {path.with_suffix('.md')}")
            continue
        if w == "examples":
            from unclip import BUNDLED_MODEL_DIR
            from unclip.evaluation.examples import find_examples, write_examples
            from unclip.evaluation.judge import Scorer

            results[w] = find_examples(engine, Scorer.load(judge), data, **({"candidates": n} if n else {}))
            path = write_examples(model or BUNDLED_MODEL_DIR, results[w])
            console.print(f"{len(results[w]['examples'])} of {results[w]['tried']} prompts kept → {path}")
        elif w in ("judge", "cascade", "inpaint"):
            results[w] = _judged(w, engine, data, judge, n, images, console, rows)
        else:
            from unclip.evaluation import stages
            from unclip.evaluation.seams import eval_outpaint
            from unclip.evaluation.watermark import eval_watermark

            special = {"outpaint": eval_outpaint, "watermark": eval_watermark}
            fn = special.get(w) or getattr(stages, f"eval_{w}")
            sized = ("upsampler", "generation", "outpaint", "watermark")
            kwargs = {"n": n} if n is not None and w in sized else {}
            if w in ("generation", "outpaint", "watermark"):
                kwargs["out_dir"] = images
            results[w] = fn(engine, data, **kwargs)
            console.print_json(json.dumps({w: results[w]}))
        if out:  # whole or not at all: a kill while writing leaves the figures there before
            part = out.with_name(out.name + ".part")
            part.write_text(json.dumps(results, indent=2, ensure_ascii=False))
            part.replace(out)


def _sheet_path(images: Path | None, model: Path | None, with_others: bool) -> Path:
    """Where `sheet` writes: --images as a file, or in it as a folder (as `all` uses it for the other images);
    the repository's docs for the bundled model; else the current folder (never the bundled model's sheet)."""
    if images is None:
        return Path("docs/contact-sheet.png") if model is None else Path("contact-sheet.png")
    if with_others or images.is_dir() or not images.suffix:
        return images / "contact-sheet.png"
    return images


def _judged(what: str, engine, data: Path, judge: Path | None, n: int | None, images: Path | None, console,
            rows: str | None):  # fmt: skip
    from unclip.evaluation.judge import Scorer, judge_report

    scorer = Scorer.load(judge)
    if what == "judge":
        result = judge_report(scorer, data, **({"n": n} if n else {}))
        console.print_json(json.dumps(result))
        return result
    if what == "inpaint":
        from unclip.evaluation import inpaint

        result = inpaint.eval_inpaint(engine, scorer, data, out_dir=images, **({"n": n} if n else {}))
        console.print(inpaint.markdown_table(result))
        return result
    from unclip.evaluation.cascade import RowsError, eval_cascade, markdown_table

    kwargs: dict = {"n": n} if n else {}
    if rows:
        kwargs["rows"] = tuple(r.strip() for r in rows.split(",") if r.strip())
    try:
        result = eval_cascade(engine, scorer, data, out_dir=images, **kwargs)
    except RowsError as exc:  # said before any work; any other error is its own
        raise typer.BadParameter(str(exc), param_hint="--rows") from None
    console.print(markdown_table(result))
    return result
