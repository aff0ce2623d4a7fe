"""`unclip generate|edit|outpaint|vary|blend|upscale`: the engine from the shell.

Every command writes PNGs with provenance (text chunks ``unclip:*`` + the invisible watermark, see
`unclip.safety.provenance`) into --out, prints their paths on stdout (one per line; the grid sheet last) and
shows a progress bar on stderr. Exit codes: 0 done, 1 refused by the content policy (as `unclip policy
check`), 2 bad input (one line on stderr, never a traceback), 130 interrupted.

torch and the engine are imported inside the commands so that `unclip --help` stays fast.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unclip.cli import app

if TYPE_CHECKING:
    from PIL import Image

    from unclip.engine import Engine

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
    int | None, typer.Option("--seed", help="Seed of the first image (image i uses seed+i); random if unset.")
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
def _errors() -> Iterator[None]:
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


def _check_common(
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
def _policy():
    from unclip.safety.policy import ContentPolicy

    return ContentPolicy.load()


def _check_prompts(prompts: Sequence[str]) -> None:
    """Refuse an empty, overlong or flagged prompt before any model is loaded, as the server does."""
    for text in prompts:
        if not text.strip():
            raise CliError("the prompt is empty")
        if len(text) > 1000:
            raise CliError(f"the prompt is {len(text)} characters; the limit is 1000")
    _quiet_loading()  # the policy's classifier loads a transformers model
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

    from unclip.safety.uploads import _sniff, _to_8bit

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
    return _to_8bit(img)


def _square(img: Image.Image, label: str) -> None:
    if img.width != img.height:
        raise CliError(f"{label} must be square, got {img.width}x{img.height} (crop or pad it first)")


def _check_repaint_area(img: Image.Image, label: str) -> None:
    """The edit area is where alpha < 128 (as the engine reads it); refuse files that have none."""
    if img.mode != "RGBA":
        raise CliError(
            f"{label} has no transparency: make the area to edit transparent"
            + (" or give --mask" if label.startswith("IMAGE") else "")
        )
    if img.getchannel("A").getextrema()[0] >= 128:
        raise CliError(f"{label} is fully opaque: make the area to edit transparent")


def _parse_canvas(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise CliError(f"--canvas must look like WIDTHxHEIGHT (e.g. 512x256), got {text!r}")
    return int(m.group(1)), int(m.group(2))


# ------------------------------------------------------------------------------------------- blend items
_WEIGHT = re.compile(r"^(?P<item>.+?)\s*[=:]\s*(?P<w>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$", re.S)


def parse_blend_items(items: Sequence[str], weights: Sequence[float]) -> list[tuple[str | Path, float]]:
    """(prompt or image path, weight) pairs. An item is `TEXT_OR_PATH`, `TEXT_OR_PATH=WEIGHT` or
    `TEXT_OR_PATH:WEIGHT` (the suffix counts as a weight only when it is a number); with --weight given once
    per item, items are taken literally. Missing weights are 1; weights are relative (normalised)."""
    items = [it for it in items if it is not None]
    if weights and len(weights) != len(items):
        raise CliError(
            f"give --weight once per item or not at all: {len(items)} items, {len(weights)} weights"
        )
    out: list[tuple[str | Path, float]] = []
    for i, raw in enumerate(items):
        text, weight = raw, 1.0
        if weights:
            weight = float(weights[i])
        elif not Path(raw).is_file():
            m = _WEIGHT.match(raw)
            if m:
                text, weight = m.group("item"), float(m.group("w"))
        if not math.isfinite(weight) or weight < 0:
            raise CliError(f"blend weights must be zero or positive numbers, got {weight} for {text!r}")
        path = Path(text).expanduser()
        if path.is_file():
            out.append((path, weight))
        elif text.lower().endswith(IMAGE_SUFFIXES) and "\n" not in text:
            raise CliError(f"blend item {text!r}: no such file")
        else:
            out.append((text.strip(), weight))
    if len(out) < 2:
        raise CliError(f"blend needs at least two items, got {len(out)}")
    if sum(w for _, w in out) <= 0:
        raise CliError("blend weights must not all be zero")
    return out


# ------------------------------------------------------------------------------------------- engine
def _quiet_loading() -> None:
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

    _quiet_loading()
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
    with _status("loading the model", quiet):
        return _load_engine(str(model.resolve()) if model is not None else None, threads)


# ------------------------------------------------------------------------------------------- progress
@contextmanager
def _status(message: str, quiet: bool) -> Iterator[None]:
    if quiet:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
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


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 10_000):
        p = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not p.exists():
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


def save_outputs(
    images: Sequence[Image.Image], out: Path, command: str, label: str, extra: dict[str, Any], grid: bool
) -> list[Path]:
    """Write each image (and the grid sheet) as a PNG with provenance; print and return the paths."""
    from unclip.safety.provenance import encode_png

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{command}-{_slug(label)}"
    paths = []
    for i, im in enumerate(images):
        meta = metadata_for(im, command, extra)
        seed = meta.get("seed")
        path = _unique(out / f"{base}-{seed if seed is not None else i}.png")
        _write(path, encode_png(im, meta))
        paths.append(path)
    if grid and images:
        sheet = make_grid(images)
        seeds = [im.info.get("unclip", {}).get("seed") for im in images]
        meta = metadata_for(images[0], command, extra)
        meta.pop("seed", None)
        meta.update(grid=f"{len(images)} images", seeds=_meta_value([s for s in seeds if s is not None]))
        path = _unique(out / f"{base}-grid.png")
        _write(path, encode_png(sheet, meta))
        paths.append(path)
    for p in paths:
        typer.echo(str(p))
    return paths


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path} ({exc.strerror or exc})") from exc


# ------------------------------------------------------------------------------------------- commands
@app.command("generate")
def generate_cmd(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. 'grinning face, noto style'.")],
    n: N = 4,
    size: Size = 256,
    seed: Seed = None,
    guidance: Guidance = None,
    steps: Steps = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", help="What to steer away from.")
    ] = None,
    sampler: Sampler = None,
    model: Model = None,
    out: Out = Path("outputs"),
    grid: Grid = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Generate images from a text prompt (prior → decoder → upsamplers)."""
    with _errors():
        _check_common(n, size, steps, guidance, sampler)
        _check_prompts([prompt])
        engine = engine_for(model, threads, quiet)
        with _progress("generate", quiet) as cb:
            images = engine.generate(
                prompt,
                n=n,
                size=size,
                seed=seed,
                guidance=guidance,
                steps=steps,
                negative_prompt=negative_prompt,
                sampler=sampler,
                progress=cb,
            )
        save_outputs(images, out, "generate", prompt, {"prior_steps": engine.prior_steps}, grid)


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
    with _errors():
        _check_common(n, size, steps, guidance, sampler)
        img = read_image(image, "IMAGE")
        _square(img, f"IMAGE {image}")
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
        _check_prompts([prompt])
        engine = engine_for(model, threads, quiet)
        with _progress("edit", quiet) as cb:
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


@app.command("outpaint")
def outpaint_cmd(
    image: Annotated[Path, typer.Argument(help="Image to extend (any shape).")],
    prompt: Annotated[str, typer.Argument(help="What the whole, larger picture shows.")],
    left: Annotated[int, typer.Option("--left", help="Pixels to add on the left.")] = 0,
    right: Annotated[int, typer.Option("--right", help="Pixels to add on the right.")] = 0,
    top: Annotated[int, typer.Option("--top", help="Pixels to add on top.")] = 0,
    bottom: Annotated[int, typer.Option("--bottom", help="Pixels to add at the bottom.")] = 0,
    canvas: Annotated[
        str | None,
        typer.Option(
            "--canvas",
            help="Final canvas WIDTHxHEIGHT; the image is centred, or placed at --left/--top when given.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help=f"Number of versions (seeds), 1 to {MAX_N}.")] = 1,
    seed: Seed = None,
    guidance: OutpaintGuidance = None,
    steps: Steps = None,
    sampler: Sampler = None,
    model: Model = None,
    out: Out = Path("outputs"),
    grid: Grid = False,
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """Outpaint: grow the canvas beyond IMAGE's borders, frame by frame, keeping the original pixels."""
    with _errors():
        _check_common(n, None, steps, guidance, sampler)
        if min(left, right, top, bottom) < 0:
            raise CliError("--left/--right/--top/--bottom must be zero or positive")
        size = _parse_canvas(canvas) if canvas is not None else None
        if size is None and not (left or right or top or bottom):
            raise CliError("nothing to outpaint: give --left/--right/--top/--bottom PX or --canvas WxH")
        img = read_image(image, "IMAGE")
        _check_prompts([prompt])
        engine = engine_for(model, threads, quiet)
        first = seed if seed is not None else _random_seed()
        images = []
        for i in range(n):
            with _progress(f"outpaint {i + 1}/{n}" if n > 1 else "outpaint", quiet) as cb:
                images.append(
                    engine.outpaint(
                        img,
                        prompt,
                        left=left,
                        right=right,
                        top=top,
                        bottom=bottom,
                        canvas=size,
                        seed=first + i,
                        guidance=guidance,
                        steps=steps,
                        sampler=sampler,
                        progress=cb,
                    )
                )
        extra = {
            "source": image.name,
            "left": left,
            "right": right,
            "top": top,
            "bottom": bottom,
            "canvas": f"{images[0].width}x{images[0].height}",
        }
        save_outputs(images, out, "outpaint", prompt, extra, grid)


def _random_seed() -> int:
    import os

    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


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
    with _errors():
        _check_common(n, size, steps, guidance, sampler)
        if not 0.05 <= strength <= 1.0:
            raise CliError(f"--strength must be between 0.05 and 1, got {strength}")
        img = read_image(image, "IMAGE")
        _square(img, f"IMAGE {image}")
        engine = engine_for(model, threads, quiet)
        with _progress("vary", quiet) as cb:
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


BLEND_HELP = (
    "Blend prompts and images in CLIP space, e.g.\n\n"
    '    unclip blend "a cat=0.7" dog.png=0.3\n\n'
    "Each ITEM is a prompt or an image file (an existing file is an image), optionally followed by "
    '=WEIGHT or :WEIGHT, read as a weight only when it is a number ("flag: France" stays a prompt). '
    "Weights are relative (normalised to sum 1) and default to 1. "
    "Or give --item/--weight pairs, taken literally:\n\n"
    '    unclip blend --item "a cat" --weight 0.5 --item cat.png --weight 0.5\n\n'
    "Two items are slerped (as DALL·E 2 interpolates), more are averaged."
)


@app.command("blend", help=BLEND_HELP, short_help="Blend prompts and images in CLIP space.")
def blend_cmd(
    items: Annotated[
        list[str] | None, typer.Argument(help="ITEM[=WEIGHT]: a prompt or an image path, with a weight.")
    ] = None,
    item: Annotated[list[str] | None, typer.Option("--item", help="An item (repeat); after ITEMS.")] = None,
    weight: Annotated[
        list[float] | None, typer.Option("--weight", help="One weight per item, in order (repeat).")
    ] = None,
    n: N = 4,
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
    with _errors():
        _check_common(n, size, steps, guidance, sampler)
        parsed = parse_blend_items([*(items or []), *(item or [])], weight or [])
        _check_prompts([it for it, _ in parsed if isinstance(it, str)])
        engine_items: list[tuple[Any, float]] = []
        for it, w in parsed:
            if isinstance(it, Path):
                img = read_image(it, "blend item")
                _square(img, f"blend item {it}")
                engine_items.append((img, w))
            else:
                engine_items.append((it, w))
        engine = engine_for(model, threads, quiet)
        with _progress("blend", quiet) as cb:
            images = engine.blend(
                engine_items,
                n=n,
                size=size,
                seed=seed,
                guidance=guidance,
                steps=steps,
                sampler=sampler,
                progress=cb,
            )
        labels = [it.name if isinstance(it, Path) else it for it, _ in parsed]
        extra = {"items": labels, "weights": [w for _, w in parsed]}
        save_outputs(images, out, "blend", " ".join(labels), extra, grid)


@app.command("upscale")
def upscale_cmd(
    image: Annotated[Path, typer.Argument(help="Image up to 256 px on its longest side.")],
    model: Model = None,
    out: Out = Path("outputs"),
    quiet: Quiet = False,
    threads: Threads = None,
) -> None:
    """4× super-resolution with the model's learned upsampler (≤64 px → 256 px, ≤256 px → 1024 px)."""
    with _errors():
        img = read_image(image, "IMAGE")
        if max(img.size) > 256:
            raise CliError(
                f"IMAGE {image} is {img.width}x{img.height}; upscale takes images up to 256 px "
                "on the longest side"
            )
        engine = engine_for(model, threads, quiet)
        with _status("upscaling", quiet):
            result = engine.upscale(img)
        extra = {"source": image.name, "source_size": f"{img.width}x{img.height}"}
        save_outputs([result], out, "upscale", image.stem, extra, grid=False)
