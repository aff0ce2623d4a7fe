"""The `unclip` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import os
import re

# Before torch loads (commands import it lazily): spinning OpenMP threads stall for whole time slices when the
# CPU is shared, e.g. `unclip serve` beside other work; an explicit OMP_WAIT_POLICY wins. See unclip.engine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from unclip import __version__

app = typer.Typer(
    name="unclip",
    help="Self-hosted unCLIP image generation: generate, edit, outpaint, vary, blend, upscale and serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unclip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """unclip command line."""


def _register() -> None:
    # Each module adds its commands to `app`; imports inside commands stay lazy so `unclip --help` is fast.
    import importlib

    # The image commands (generate … upscale) share unclip.cli.common; listed in the order `--help` shows them.
    image_commands = ("generate", "edit", "outpaint", "vary", "blend", "upscale")
    for name in ("data", "train", "evaluate", *image_commands, "bench", "serve", "worker", "admin", "safety"):
        try:
            importlib.import_module(f"unclip.cli.{name}")
        except ModuleNotFoundError as exc:  # a module not written yet
            if exc.name != f"unclip.cli.{name}":
                raise


_register()


def main() -> None:
    """`unclip`: an error a command did not word itself (a missing or malformed file, a database that cannot be
    reached) is one line on stderr, not a traceback; UNCLIP_DEBUG=1 shows the traceback."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("UNCLIP_DEBUG"):
            raise
        typer.secho(f"error: {one_line(exc)}", fg=typer.colors.RED, err=True)
        raise SystemExit(2 if isinstance(exc, OSError | ValueError) else 1) from None


def one_line(exc: BaseException) -> str:
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", " ".join(str(exc).split()))  # SQLAlchemy's
    text = text or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text if len(text) <= 300 else text[:297] + "…"

