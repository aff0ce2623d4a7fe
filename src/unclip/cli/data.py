"""`unclip data …`: build, inspect and summarise training data."""

from __future__ import annotations

from pathlib import Path

import typer

from unclip.cli import app

data_app = typer.Typer(help="Build and inspect training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DEFAULT_OUT = Path("data/emoji")
DEFAULT_CACHE = Path("cache")


@data_app.command("build")
def build_cmd(
    source: str = typer.Argument("emoji", help="Dataset to build: 'emoji' (from npm packages)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Output folder for shards and manifest."),
    cache: Path = typer.Option(DEFAULT_CACHE, help="Cache for npm packages and rendered images."),
    sizes: list[str] = typer.Option(
        ["64", "128", "256", "1024"],
        "--sizes",
        help="Square sizes to rasterise (repeat, or comma-separated).",
    ),
    locales: list[str] = typer.Option(
        [], "--locales", help="Caption locales (repeat, or comma-separated; default: all 28; English always)."
    ),
    holdout: Path | None = typer.Option(
        None, help="TSV of (hexcode, style) pairs kept out of train and val."
    ),
    workers: int = typer.Option(0, help="Rasterising processes (0: one per core)."),
    large_limit: int = typer.Option(1500, help="Per split, how many images get the 1024 px render."),
    seed: int = typer.Option(0),
) -> None:
    """Fetch the pinned npm packages, join, caption, split, rasterise and write WebDataset shards."""
    import os

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from unclip.data.build import BuildConfig, build
    from unclip.data.emoji import LOCALES

    if source != "emoji":
        raise typer.BadParameter(
            "only 'emoji' can be built; train on your own data with --data FOLDER", param_hint="source"
        )
    locales = [loc.strip() for item in locales for loc in item.split(",") if loc.strip()]
    bad = [loc for loc in locales if loc not in LOCALES]
    if bad:
        raise typer.BadParameter(
            f"unknown locales {bad}; choose from {', '.join(LOCALES)}", param_hint="--locales"
        )
    cfg = BuildConfig(
        out=out,
        cache=cache,
        holdout=holdout or Path(__file__).resolve().parents[1] / "data" / "holdout.tsv",
        sizes=_sizes(sizes),
        locales=tuple(locales) or LOCALES,
        workers=workers or os.cpu_count() or 1,
        large_limit=large_limit,
        seed=seed,
    )
    console = Console()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("rasterising", total=None)

        def progress(_: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        manifest = build(cfg, progress)
    for style, s in manifest["join"].items():
        console.print(f"  {style:28s} joined {s['joined']:5d}  dropped {s['dropped']:4d}")
    h = manifest["holdout"]
    console.print(
        f"  holdout: {h['pairs_found']} of {h['pairs_listed']} pairs found, {h['images']} images, "
        f"none in train/val/test ({h['trained_images_checked']} images checked; "
        f"{h['identical_drawings_dropped']} drawn exactly as a held-out image left out)"
    )
    console.print(
        f"[green]built[/] {manifest['images_rendered']} images in {manifest['build_seconds']} s "
        f"({manifest['images_per_second']} images/s while rasterising), "
        f"{manifest['bytes_on_disk'] / 1e6:.0f} MB → {out}/manifest.json"
    )


def _sizes(values: list[str]) -> tuple[int, ...]:
    """--sizes 64 --sizes 128, or --sizes 64,128."""
    try:
        sizes = {int(v) for item in values for v in str(item).split(",") if v.strip()}
    except ValueError as exc:
        raise typer.BadParameter(f"sizes are whole numbers of pixels: {exc}", param_hint="--sizes") from exc
    if not sizes or min(sizes) < 8 or max(sizes) > 4096:
        raise typer.BadParameter("sizes must be between 8 and 4096 px", param_hint="--sizes")
    return tuple(sorted(sizes))


@data_app.command("import")
def import_cmd(
    src: Path = typer.Argument(
        ..., help="A folder of images with same-named .txt captions, or WebDataset shards."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (then: unclip train … --data OUT)."),
    sizes: list[str] = typer.Option(
        ["64"], "--sizes", help="Square sizes to write (repeat, or comma-separated)."
    ),
    fit: str = typer.Option("pad", help="Non-square images: pad (on white), crop (centre) or stretch."),
    style: str = typer.Option("user", help="Style name recorded for images whose source names none."),
    locale: str = typer.Option("en", help="Language of the .txt captions."),
    workers: int = typer.Option(0, help="Decoding processes (0: one per core)."),
) -> None:
    """Import your own images into the layout training reads (shards/{size}/{train,val,test}-*.tar)."""
    import os

    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from unclip.data.importer import ImportConfig, import_data
    from unclip.data.loader import FITS

    if fit not in FITS:
        raise typer.BadParameter(f"choose from {', '.join(FITS)}", param_hint="--fit")
    if not src.exists() and not any(c in str(src) for c in "*?{"):
        raise typer.BadParameter(f"{src} does not exist", param_hint="SRC")
    cfg = ImportConfig(src=src, out=out, sizes=_sizes(sizes), fit=fit, style=style, locale=locale,
                       workers=workers or os.cpu_count() or 1)  # fmt: skip
    console = Console()
    with Progress(SpinnerColumn(), TextColumn("[bold]importing"), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task("import", total=None)
        manifest = import_data(cfg, lambda _, done, total: bar.update(task, completed=done, total=total))
    for split, c in manifest["counts"].items():
        console.print(f"  {split:8s} {c['total']:7d} images")
    if manifest["skipped"]:
        console.print(f"  skipped: {manifest['skipped']}")
    console.print(
        f"[green]imported[/] {manifest['images_rendered']} images in {manifest['build_seconds']} s "
        f"({manifest['images_per_second']} images/s), {manifest['bytes_on_disk'] / 1e6:.1f} MB "
        f"→ {out}/manifest.json"
    )


@data_app.command("show")
def show_cmd(
    data: Path = typer.Option(DEFAULT_OUT, help="Dataset folder, img2dataset output folder, or shards."),
    size: int = typer.Option(64, help="Image size to read (the nearest written size at or above it)."),
    split: str = typer.Option("train", help="Split: train, val, test or holdout."),
    n: int = typer.Option(24, "-n", help="How many random samples."),
    locales: str = typer.Option(
        "en,de,ja", help="Comma-separated caption languages to print under each image."
    ),
    out: Path = typer.Option(Path("sheet.png"), help="Where to write the contact sheet PNG."),
    seed: int = typer.Option(0, help="Which random samples."),
    columns: int = typer.Option(0, help="Columns (0: about square)."),
) -> None:
    """Write a contact sheet PNG of random samples with their captions in several languages."""
    from unclip.data.loader import dataset_shards, shard_sizes
    from unclip.data.sheet import contact_sheet, pick_samples, save_png

    try:
        shards = dataset_shards(data, size, split)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    samples = pick_samples(shards, n, seed)
    if not samples:
        raise typer.BadParameter(f"no samples in {data} ({split})", param_hint="--data")
    written = shard_sizes(data) if data.is_dir() else []
    read = next((s for s in written if str(shards[0].parent.name) == str(s)), None)
    display = max(128, min(256, size * 2))
    title = f"{data} · {split} · {len(samples)} random samples (seed {seed})" + (
        f" · {read}px" if read else ""
    )
    loc = [x.strip() for x in locales.split(",") if x.strip()]
    sheet = contact_sheet(samples, loc, display=display, columns=columns or None, title=title, seed=seed)
    save_png(sheet, out)
    typer.echo(f"{len(samples)} samples, {sheet.width}×{sheet.height} px → {out}")


@data_app.command("stats")
def stats_cmd(
    data: Path = typer.Option(DEFAULT_OUT, help="Dataset folder (from `unclip data build` or `import`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Counts per split and style, join statistics, holdout check, sizes and bytes on disk."""
    import json

    from rich.console import Console

    from unclip.data.stats import dataset_stats, print_stats

    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    try:
        stats = dataset_stats(data)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    if as_json:
        typer.echo(json.dumps(stats, indent=2, ensure_ascii=False, default=list))
        return
    print_stats(stats, Console(width=max(100, Console().width)))
    if stats["holdout"].get("leaks_in_train_val"):
        raise typer.Exit(1)
