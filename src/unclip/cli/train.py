"""`unclip train …`: train the stages of an unCLIP model from a config file."""

from __future__ import annotations

from pathlib import Path

import typer

from unclip.cli import app

STAGE_HELP = (
    "tokenizer, clip, prior, movq, decoder, inpaint, upsampler-256, upsampler-1024, or all; "
    "judge (the evaluation classifier, not part of `all`)"
)


@app.command("train")
def train_cmd(
    stage: str = typer.Argument(..., help=STAGE_HELP),
    config: str = typer.Option(
        "emoji-mini", "--config", "-c", help="Config name in configs/ or a JSON path."
    ),
    data: Path = typer.Option(Path("data/emoji"), help="Dataset folder (from `unclip data build`)."),
    run_dir: Path | None = typer.Option(
        None, help="Where checkpoints, logs and the model go (default runs/CONFIG)."
    ),
    max_steps: int | None = typer.Option(None, help="Override the stage's step limit."),
    max_minutes: float | None = typer.Option(None, help="Override the stage's time limit."),
    batch_size: str | None = typer.Option(
        None,
        help="Override the batch size: a number, or auto (on a GPU: time a few steps at the config's batch, "
        "twice it, four times it… and train at the smallest within 10% of the best samples per second, the "
        "learning rate scaled by the square root; the config's batch on a CPU).",
    ),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    init_from: Path | None = typer.Option(
        None,
        help="Start clip, prior, movq, decoder and inpaint from this model folder's weights, e.g. "
        "models/unclip-emoji, instead of from scratch (a new run's model folder starts as a copy of it, "
        "tokenizer included). Ignored when a checkpoint resumes.",
    ),
) -> None:
    """Train one stage (or all, in order). Run again to resume from the last checkpoint."""
    from rich.console import Console

    from unclip.engine.components import is_model_folder
    from unclip.training.run import EXTRA_STAGES, STAGES, Run, load_config

    cfg = load_config(config)
    if init_from is not None:
        for section in ("clip", "prior", "movq", "decoder", "inpaint"):
            if section in cfg:  # a config for some stages only (emoji-words) has no others
                cfg[section]["init_from"] = str(init_from)
    if batch_size is not None and batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) > 0):
        raise typer.BadParameter("a whole number above 0, or auto", param_hint="--batch-size")
    batch: int | str | None = int(batch_size) if batch_size and batch_size.isdigit() else batch_size
    stages = STAGES if stage == "all" else (stage,)
    if any(s not in STAGES + EXTRA_STAGES for s in stages):
        raise typer.BadParameter(f"unknown stage {stage!r}; choose from {STAGE_HELP}", param_hint="stage")
    missing = [s for s in stages if s.replace("-", "_") not in cfg]
    if missing:  # before anything trains (`all` on a config for some stages trained those, then failed)
        has = [s for s in STAGES + EXTRA_STAGES if s.replace("-", "_") in cfg]
        raise typer.BadParameter(
            f"the config {cfg['name']!r} has no {', '.join(missing)} section; it trains {', '.join(has) or 'nothing'}",
            param_hint="stage",
        )
    if not (data / "manifest.json").is_file():
        raise typer.BadParameter(f"{data} is not a dataset folder (build one with `unclip data build`)",
                                 param_hint="--data")  # fmt: skip
    if init_from is not None and not is_model_folder(init_from):
        raise typer.BadParameter(f"{init_from} is not a model folder", param_hint="--init-from")
    run = Run(cfg, data, run_dir or Path("runs") / cfg["name"], device)
    if init_from is not None:
        run.seed_model(init_from)
    console = Console()
    for s in stages:
        metrics = run.train(s, {"max_steps": max_steps, "max_minutes": max_minutes, "batch_size": batch})
        console.print(
            f"[green]{s}[/] "
            + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        )
    console.print(f"model folder: {run.judge_dir if stages == ('judge',) else run.model_dir}")


@app.command("pack-model")
def pack_cmd(
    src: Path = typer.Argument(..., help="A trained model folder (runs/CONFIG/model)."),
    dst: Path = typer.Argument(..., help="Where to write the shippable copy."),
) -> None:
    """Copy a model folder with fp16 weights and no file over 16 MB, ready to ship."""
    from unclip.models.pack import pack_model

    try:
        sizes = pack_model(src, dst)
    except (ValueError, OSError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{len(sizes)} files, {sum(sizes.values()) / 2**20:.1f} MB → {dst}")
