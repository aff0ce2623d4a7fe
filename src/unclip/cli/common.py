"""Shared by the image commands (`unclip generate|edit|outpaint|vary|blend|upscale`, one module each).

Every command writes PNGs with provenance (text chunks ``unclip:*`` + the invisible watermark, see
`unclip.safety.provenance`) into --out, prints their paths on stdout (one per line; the grid sheet last) and
shows a progress bar on stderr. Exit codes: 0 done, 1 refused by the content policy (as `unclip policy
check`), 2 bad input (one line on stderr, never a traceback), 130 interrupted.

Here: the limits, the option types, the error handling (`errors`), validation, the content-policy check, safe
reading of input files, the cached engine, progress and output. torch and the engine are imported inside the
functions (and the commands) so that `unclip --help` stays fast.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from PIL import Image

    from unclip.engine import Engine
    from unclip.safety.policy import ContentPolicy

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

SIZES = (256, 512, 1024)  # unclip.engine.images.SIZES (kept here so validation needs no torch)
SAMPLERS = ("dpm++", "unipc", "ddim", "ddpm")  # unclip.engine.samplers.SAMPLERS
MAX_N = 10  # unclip.engine.engine.MAX_N
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096  # decompression-bomb guard: refused before any pixel is decoded
MIN_SIDE = 16
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class CliError(Exception):
    """Bad input: printed as one line, exit code 2."""


class Refused(Exception):
    """A prompt the content policy flags: printed as one line, exit code 1."""


# ------------------------------------------------------------------------------------------- options
Model = Annotated[
    Path | None, typer.Option("--model", help="Model folder (default: the bundled models/unclip-emoji).")
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNGs (created if missing).")]
N = Annotated[int, typer.Option("-n", "--n", help=f"Number of images, 1 to {MAX_N}.")]


def parse_size(value: str | int | None) -> int | None:
    """`--size 256` or the API's form `--size 256x256` (square sizes only)."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d{1,5})(?:\s*[xX×]\s*(\d{1,5}))?\s*", value)
    if not m or (m.group(2) and m.group(1) != m.group(2)):
        raise typer.BadParameter(f"{value!r}: give 256, 512 or 1024, or 256x256, 512x512 or 1024x1024")
    return int(m.group(1))


Size = Annotated[
    int,
    typer.Option("--size", parser=parse_size, metavar="SIZE", help="Output size: 256, 512 or 1024 (or 256x256…)."),
]
Seed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        min=0,
        max=2**63 - 1,  # as the API: torch seeds are 64-bit, larger values wrapped round silently
        help="Seed of the first image (image i uses seed+i), 0 to 2**63-1; random if unset.",
    ),
]
Guidance = Annotated[
    float | None,
    typer.Option("--guidance", help="Decoder classifier-free guidance scale, 0 to 30 (default 4)."),
]
OutpaintGuidance = Annotated[
    float | None,
    typer.Option("--guidance", help="Guidance scale of the frames, 0 to 30 (default 1: continue what is there)."),
]
Steps = Annotated[
    int | None, typer.Option("--steps", help="Decoder sampling steps, 1 to 200 (default: the engine's, 12).")
]
Sampler = Annotated[
    str | None, typer.Option("--sampler", help=f"Sampler: {', '.join(SAMPLERS)} (default dpm++).")
]
Grid = Annotated[bool, typer.Option("--grid", help="Also write a contact sheet of all images.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Threads = Annotated[
    int | None, typer.Option("--threads", help="CPU threads for torch (default: the engine's choice).")
]


# ------------------------------------------------------------------------------------------- errors
@contextmanager
def errors() -> Iterator[None]:
    """Turn every expected failure into one line on stderr and an exit code."""
    import os

    # before anything loads torch (the policy's classifier does): see unclip.engine for why
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from unclip.safety.uploads import UploadError

    try:
        yield
    except CliError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except Refused as exc:
        _fail(str(exc), EXIT_REFUSED)
    except UploadError as exc:
        _fail(exc.message, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        from unclip.engine.errors import Cancelled, InvalidInput

        if isinstance(exc, InvalidInput):
            _fail(f"{exc.message}" + (f" ({_flag(exc.param)})" if exc.param else ""), EXIT_BAD_INPUT)
        if isinstance(exc, Cancelled):
            _fail("cancelled", EXIT_INTERRUPTED)
        raise


def _flag(param: str) -> str:
    return {
        "image": "IMAGE",
        "prompt": "PROMPT",
        "items": "ITEMS",
        "weights": "ITEMS",
        "extend": "--left/--right/--top/--bottom",
    }.get(param, f"--{param.replace('_', '-')}")


def _fail(message: str, code: int) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


# ------------------------------------------------------------------------------------------- validation
def check_common(
    n: int, size: int | None, steps: int | None, guidance: float | None, sampler: str | None
) -> None:
    if not 1 <= n <= MAX_N:
        raise CliError(f"-n must be between 1 and {MAX_N}, got {n}")
    if size is not None and size not in SIZES:
        raise CliError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")
    if steps is not None and not 1 <= steps <= 200:
        raise CliError(f"--steps must be between 1 and 200, got {steps}")
    if guidance is not None and not 0 <= guidance <= 30:
        raise CliError(f"--guidance must be between 0 and 30, got {guidance}")
    if sampler is not None and sampler not in SAMPLERS:
        raise CliError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


# ------------------------------------------------------------------------------------------- policy
def _policy() -> ContentPolicy:
    from unclip.safety.policy import ContentPolicy

    return ContentPolicy.load()


def check_prompts(prompts: Sequence[str], negative_prompt: str | None = None) -> None:
    """Refuse an empty (nothing visible), overlong, undecodable or flagged prompt, and a negative prompt the
    server would refuse, before any model is loaded, with the server's checks."""
    from unclip.service.errors import APIError
    from unclip.service.images import check_prompt

    try:
        for text in prompts:
            check_prompt(text)
        check_prompt(negative_prompt, required=False, param="negative_prompt")
    except APIError as exc:
        message = exc.message.replace("Invalid 'prompt': ", "the prompt: ")
        message = message.replace("Invalid 'negative_prompt': ", "--negative-prompt: ")
        raise CliError(message) from None
    quiet_loading()  # the policy's classifier loads a transformers model
    policy = _policy()
    for text in prompts:
        try:
            decision = policy.check(text)
        except Exception as exc:  # fail closed: no generation without a policy decision
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Refused(f"the content policy could not check the prompt ({first})") from exc
        if decision.flagged:
            why = decision.category or "policy"
            raise Refused(
                f"the prompt {_short(text)!r} was refused by the content policy ({why}); "
                "see `unclip policy check`"
            )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------- input files
def read_image(path: Path, param: str = "image", grey_as_alpha: bool = False) -> Image.Image:
    """Decode any Pillow-readable image file safely: size limits are checked from the header before any
    pixel is decoded (decompression bombs), animations give their first frame, EXIF rotation is applied.
    Returns 8-bit RGB or RGBA; with `grey_as_alpha` a greyscale file without transparency becomes RGBA with
    its luminance as alpha (a black-and-white mask: black = transparent = edit)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from unclip.safety.uploads import UploadError, _sniff, _to_8bit, to_8bit

    label = f"{param} {path}"
    if not path.exists():
        raise CliError(f"{label}: no such file")
    if path.is_dir():
        raise CliError(f"{label}: is a directory, not an image file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CliError(
                f"{label}: the file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{label}: cannot read it ({exc.strerror or exc})") from exc
    if not data:
        raise CliError(f"{label}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w < MIN_SIDE or h < MIN_SIDE:
                raise CliError(f"{label}: is {w}x{h}; images must be at least {MIN_SIDE}x{MIN_SIDE}")
            if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
                raise CliError(f"{label}: is {w}x{h}, too large to decode safely (limit {MAX_PIXELS} pixels)")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except CliError:
        raise
    except UnidentifiedImageError as exc:
        kind = _sniff(data)
        what = (
            "not an image file"
            if kind in ("unknown", "ZIP", "PDF")
            else f"a {kind} file Pillow cannot decode"
        )
        raise CliError(f"{label}: {what}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise CliError(f"{label}: too large to decode safely") from exc
    except Exception as exc:  # truncated files, bad CRCs, decoder errors
        raise CliError(f"{label}: could not be decoded ({str(exc).strip() or type(exc).__name__})") from exc
    if (
        grey_as_alpha
        and img.mode in ("L", "1", "I", "I;16", "I;16B", "I;16L")
        and "transparency" not in img.info
    ):
        alpha = _to_8bit(img).convert("L")
        out = Image.new("RGBA", img.size, (0, 0, 0, 255))
        out.putalpha(alpha)
        return out
    try:
        return to_8bit(img, data, param)
    except UploadError as exc:
        raise CliError(f"{label}: {exc.message.removeprefix('Invalid input image - ')}") from None


def check_square_image(img: Image.Image, label: str) -> None:
    if img.width != img.height:
        raise CliError(f"{label} must be square, got {img.width}x{img.height} (crop or pad it first)")


# ------------------------------------------------------------------------------------------- engine
def quiet_loading() -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    except Exception:  # pragma: no cover - cosmetic only
        pass


@lru_cache(maxsize=2)
def _load_engine(model: str | None, threads: int | None) -> Engine:
    from unclip.engine import Engine

    quiet_loading()
    try:
        return Engine.load(model, threads=threads)
    except (OSError, ValueError, KeyError) as exc:
        from unclip.engine.errors import InvalidInput

        if isinstance(exc, InvalidInput):
            raise
        raise CliError(f"--model {model}: cannot load the model ({str(exc).splitlines()[0]})") from exc


def engine_for(model: Path | None, threads: int | None = None, quiet: bool = False) -> Engine:
    """The engine for a model folder (cached per process, so tests and repeated calls load it once)."""
    if threads is not None and threads < 1:
        raise CliError(f"--threads must be at least 1, got {threads}")
    if model is not None and not model.is_dir():
        raise CliError(f"--model {model}: no such model folder")
    with status("loading the model", quiet):
        return _load_engine(str(model.resolve()) if model is not None else None, threads)


def random_seed() -> int:
    """A random 31-bit seed, for when --seed is not given."""
    import os

    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


# ------------------------------------------------------------------------------------------- progress
@contextmanager
def status(message: str, quiet: bool) -> Iterator[None]:
    if quiet:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@contextmanager
def progress_bar(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, fed by the engine's (step, total) callback."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def update(step: int, total: int) -> None:
            bar.update(task, completed=step, total=total)

        yield update


# ------------------------------------------------------------------------------------------- output
def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^\w]+", "-", text.lower(), flags=re.UNICODE).strip("-_")
    return (s[:limit].rstrip("-_") or "image") if s else "image"


def _write_new(path: Path, data: bytes) -> Path:
    """Write `data` to `path`, or to `path`-1, -2… when that name is taken (by a run at the same moment too: the
    file is created exclusively), and print where: no file is overwritten, and one that could not be written
    whole is removed."""
    for i in range(10_000):
        p = path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix}")
        try:
            f = p.open("xb")
        except FileExistsError:
            continue
        except OSError as exc:
            raise CliError(f"cannot write {p} ({exc.strerror or exc})") from exc
        try:
            with f:
                f.write(data)
        except OSError as exc:
            p.unlink(missing_ok=True)
            raise CliError(f"cannot write {p} ({exc.strerror or exc})") from exc
        typer.echo(str(p))
        return p
    raise CliError(f"too many files named like {path}")


def _meta_value(v: Any) -> Any:
    if isinstance(v, list | tuple | dict):
        return json.dumps(v, ensure_ascii=False)
    return v


def metadata_for(image: Image.Image, command: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The engine's metadata for the image plus the command's own, ready for `encode_png`."""
    meta = {"command": command, **dict(image.info.get("unclip", {})), **extra}
    return {k: _meta_value(v) for k, v in meta.items() if v is not None and v != ""}


def make_grid(images: Sequence[Image.Image], gap: int = 4, background=(235, 235, 235)) -> Image.Image:
    """A contact sheet: images in a near-square grid, row by row."""
    from PIL import Image

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cw, ch = max(im.width for im in images), max(im.height for im in images)
    sheet = Image.new("RGB", (cols * cw + (cols - 1) * gap, rows * ch + (rows - 1) * gap), background)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        x = c * (cw + gap) + (cw - im.width) // 2
        y = r * (ch + gap) + (ch - im.height) // 2
        sheet.paste(im.convert("RGB"), (x, y))
    return sheet


def prepare_out(out: Path) -> None:
    """Create --out and check it takes files, before the model loads: not after minutes of work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"--out {out}: the folder is not writable")


def save_outputs(
    images: Sequence[Image.Image], out: Path, command: str, label: str, extra: dict[str, Any], grid: bool
) -> list[Path]:
    """Write each image (and the grid sheet) as a PNG with provenance; print each path as it is written, and
    return them."""
    from unclip.safety.provenance import encode_png

    prepare_out(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{command}-{_slug(label)}"
    paths = []
    for i, im in enumerate(images):
        meta = metadata_for(im, command, extra)
        seed = meta.get("seed")
        paths.append(_write_new(out / f"{base}-{seed if seed is not None else i}.png", encode_png(im, meta)))
    if grid and images:
        sheet = make_grid(images)
        seeds = [im.info.get("unclip", {}).get("seed") for im in images]
        meta = metadata_for(images[0], command, extra)
        meta.pop("seed", None)
        meta.update(grid=f"{len(images)} images", seeds=_meta_value([s for s in seeds if s is not None]))
        paths.append(_write_new(out / f"{base}-grid.png", encode_png(sheet, meta)))
    return paths
