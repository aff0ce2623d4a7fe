"""`unclip bench`: the engine against the stock diffusers pipelines (speed, memory, CLIP retrieval)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from unclip.cli import app

MARKER = "<!-- unclip bench: {key} -->"
MARKER_END = "<!-- /unclip bench: {key} -->"


def _ints(values: list[str], flag: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for item in values for v in item.split(",") if v.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{flag} takes whole numbers (repeat, or comma-separated)") from exc
    if not out:
        raise typer.BadParameter(f"{flag} needs at least one value")
    return out


@app.command("bench")
def bench_cmd(
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder (default: the bundled model).")
    ] = None,
    sizes: Annotated[
        list[str] | None,
        typer.Option("--sizes", help="Output sizes (repeat, or comma-separated: 256,512,1024; default 256)"),
    ] = None,
    ns: Annotated[
        list[str] | None,
        typer.Option("--n", help="Batch sizes (repeat, or comma-separated: 1,4; default 1,4)"),
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per side, size and n.")] = 2,
    quality: Annotated[
        bool, typer.Option("--quality/--no-quality", help="Also measure CLIP retrieval of the outputs.")
    ] = True,
    upsampling: Annotated[
        bool,
        typer.Option(
            "--upsampling/--no-upsampling", help="Also time the upsampling stage alone, plain vs engine."
        ),
    ] = True,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch threads (default: all cores).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Markdown file to write the results into (e.g. docs/performance.md): one section per "
            "configuration, replaced when the same configuration runs again; the rest of the file is kept.",
        ),
    ] = None,
) -> None:
    """Time the engine against stock KandinskyV22PriorPipeline + KandinskyV22Pipeline (default settings,
    same weights, the same learned upsamplers after both), interleaved; compare CLIP retrieval of outputs."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see unclip.engine
    size_list, n_list = _ints(sizes or ["256"], "--sizes"), _ints(ns or ["1,4"], "--n")
    if any(s not in (256, 512, 1024) for s in size_list):
        raise typer.BadParameter("sizes are 256, 512 or 1024", param_hint="--sizes")
    if any(not 1 <= n <= 10 for n in n_list):
        raise typer.BadParameter("n is between 1 and 10", param_hint="--n")
    if repeats < 1:
        raise typer.BadParameter("at least one repeat", param_hint="--repeats")
    from rich.console import Console

    from unclip.cli.common import quiet_loading
    from unclip.engine.bench import BenchConfig, run_bench, targets, to_markdown

    quiet_loading()
    console = Console(stderr=True)
    cfg = BenchConfig(
        model=model,
        sizes=size_list,
        ns=n_list,
        repeats=repeats,
        threads=threads,
        quality=quality,
        upsampling=upsampling,
    )
    result = run_bench(cfg, log=lambda s: console.print(s, highlight=False))
    command = "unclip bench " + shlex.join(
        _argv(model, size_list, n_list, repeats, quality, upsampling, threads, out)
    )
    md = to_markdown(result, command)
    typer.echo(md)
    for name, ok, detail in targets(result):
        console.print(f"{'[green]met[/]' if ok else '[red]missed[/]'}  {name}: {detail}")
    if out is not None:
        write_section(
            out,
            md,
            key=shlex.join(_argv(model, size_list, n_list, repeats, quality, upsampling, threads, None)),
        )
        console.print(f"wrote {out}")


def _argv(model, sizes, ns, repeats, quality, upsampling, threads, out) -> list[str]:
    args = ["--sizes", ",".join(map(str, sizes)), "--n", ",".join(map(str, ns)), "--repeats", str(repeats)]
    if model is not None:
        args += ["--model", str(model)]
    if not quality:
        args.append("--no-quality")
    if not upsampling:
        args.append("--no-upsampling")
    if threads is not None:
        args += ["--threads", str(threads)]
    if out is not None:
        args += ["--out", str(out)]
    return args


def write_section(path: Path, section: str, key: str = "default") -> None:
    """Put `section` between the markers for `key` in `path` (appended when they are missing), so that each
    benchmark configuration keeps one section, replaced when it is run again, and the rest of the file stays."""
    start, end = MARKER.format(key=key), MARKER_END.format(key=key)
    block = f"{start}\n{section.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
