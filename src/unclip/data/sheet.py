"""`unclip data show`: a contact sheet of random samples with their captions in several languages."""

from __future__ import annotations

import io
import math
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from unclip.data.loader import IMAGE_EXTS, decode_image, sample_captions, sample_meta
from unclip.data.shards import split_name

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Font files by script, best first; UNCLIP_FONT (a path) is tried before all of them.
FONT_FILES: dict[str, tuple[str, ...]] = {
    "latin": (
        "DejaVuSans.ttf",
        "NotoSans-Regular.ttf",
        "LiberationSans-Regular.ttf",
        "Arial.ttf",
        "Helvetica.ttc",
    ),
    "cjk": (
        "NotoSansCJK-Regular.ttc",
        "NotoSansCJKjp-Regular.otf",
        "NotoSansCJKsc-Regular.otf",
        "SourceHanSans-Regular.otf",
        "NotoSerifCJK-Regular.ttc",
        "wqy-zenhei.ttc",
        "wqy-microhei.ttc",
        "DroidSansFallbackFull.ttf",
        "Hiragino Sans GB.ttc",
        "msgothic.ttc",
    ),
    "thai": (
        "NotoSansThai-Regular.ttf",
        "NotoSansThaiLooped-Regular.ttf",
        "Garuda.ttf",
        "Loma.ttf",
        "Tahoma.ttf",
    ),
    "devanagari": ("NotoSansDevanagari-Regular.ttf", "Lohit-Devanagari.ttf", "Mangal.ttf"),
    "bengali": ("NotoSansBengali-Regular.ttf", "Lohit-Bengali.ttf", "Vrinda.ttf"),
}
LOCALE_SCRIPT = {
    "ja": "cjk",
    "zh": "cjk",
    "zh-hant": "cjk",
    "ko": "cjk",
    "th": "thai",
    "hi": "devanagari",
    "bn": "bengali",
}
FONT_DIRS = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
    "/System/Library/Fonts",
    "/Library/Fonts",
    "C:/Windows/Fonts",
)
FC_LANG = {"cjk": "ja", "thai": "th", "devanagari": "hi", "bengali": "bn", "latin": "en"}


@cache
def _font_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for d in FONT_DIRS:
        root = Path(d).expanduser()
        if root.is_dir():
            for p in root.rglob("*"):
                if p.suffix.lower() in (".ttf", ".otf", ".ttc"):
                    index.setdefault(p.name.lower(), p)
    return index


@cache
def font_file(script: str) -> Path | None:
    """A font file for `script` ("latin", "cjk", "thai", "devanagari", "bengali"), or None."""
    env = os.environ.get("UNCLIP_FONT")
    if env and Path(env).is_file() and script == "latin":
        return Path(env)
    index = _font_index()
    for name in FONT_FILES.get(script, ()):
        if name.lower() in index:
            return index[name.lower()]
    fc = shutil.which("fc-match")
    if fc:  # fontconfig knows fonts under other names; it answers with its default when nothing fits
        try:
            out = subprocess.run(
                [fc, "-f", "%{file}", f":lang={FC_LANG.get(script, 'en')}"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_file():
            return Path(out)
    return None


@cache
def load_font(script: str, size: int) -> Font:
    """The font for `script` at `size` px; PIL's built-in font when there is no font file on this machine."""
    candidates = [font_file(script)] + (
        [Path(os.environ["UNCLIP_FONT"])] if os.environ.get("UNCLIP_FONT") else []
    )
    for path in candidates:
        if path is not None:
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:
                pass
    try:
        return ImageFont.load_default(size=size)  # Pillow ≥ 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _mask(font: Font, ch: str) -> bytes:
    m = font.getmask(ch)
    return bytes(m) + str(m.size).encode()


def covers(font: Font, text: str) -> bool:
    """Whether `font` has a glyph for every visible character of `text` (missing ones draw as .notdef)."""
    notdef = {_mask(font, c) for c in ("\U0010fffd", "\uffff")}
    return all(_mask(font, c) not in notdef for c in set(text) if not c.isspace() and c.isprintable())


def font_for(text: str, locale: str, size: int) -> Font:
    """The first font, among the locale's script, CJK and Latin, that covers `text`."""
    order = [LOCALE_SCRIPT.get(locale, "latin"), "cjk", "latin"]
    fonts = [load_font(s, size) for s in dict.fromkeys(order)]
    return next((f for f in fonts if covers(f, text)), fonts[0])


def wrap(text: str, font: Font, width: int, max_lines: int = 3) -> list[str]:
    """Lines of `text` no wider than `width`, broken at spaces, or between characters inside a word that is
    too wide alone (Japanese and Chinese have no spaces); an ellipsis ends text that does not fit."""
    units: list[tuple[str, str]] = []  # (token, separator before it)
    for word in text.split():
        if font.getlength(word) <= width:
            units.append((word, " " if units else ""))
        else:
            units.extend((ch, " " if j == 0 and units else "") for j, ch in enumerate(word))
    lines: list[str] = []
    line, truncated = "", False
    for tok, sep in units:
        trial = f"{line}{sep}{tok}" if line else tok
        if not line or font.getlength(trial) <= width:
            line = trial
            continue
        lines.append(line)
        line = tok
        if len(lines) == max_lines:
            truncated = True
            break
    if line and not truncated:
        lines.append(line)
    if truncated:
        last = lines[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def pick_samples(shards: Sequence[Path], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` random samples (uniform over all of them) of `shards`; reads headers first, then only those."""
    index: list[tuple[Path, str]] = []
    for path in shards:
        with tarfile.open(path) as tar:
            seen: set[str] = set()
            for m in tar.getmembers():
                key, ext = split_name(m.name)
                if ext in IMAGE_EXTS and key not in seen:
                    seen.add(key)
                    index.append((path, key))
    chosen = random.Random(seed).sample(index, min(n, len(index)))
    wanted: dict[Path, set[str]] = {}
    for path, key in chosen:
        wanted.setdefault(path, set()).add(key)
    found: dict[tuple[Path, str], dict[str, Any]] = {}
    for path, keys in wanted.items():
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                key, ext = split_name(m.name)
                if key in keys and m.isfile():
                    sample = found.setdefault((path, key), {"__key__": key})
                    fh = tar.extractfile(m)
                    sample[ext] = fh.read() if fh else b""
    return [found[c] for c in chosen if c in found]


def contact_sheet(
    samples: Sequence[dict[str, Any]],
    locales: Sequence[str] = ("en", "de", "ja"),
    display: int = 160,
    columns: int | None = None,
    title: str = "",
    seed: int = 0,
    caption_lines: int = 3,
) -> Image.Image:
    """A white sheet: each sample's image (`display` px) with, below it, its key and style and one caption per
    locale it has (json "captions"; for a sample without them, its txt)."""
    rng = random.Random(seed)
    cols = columns or min(len(samples), max(1, math.ceil(math.sqrt(len(samples) * 1.5))))
    cell_w = max(display, 260)
    pad, fs = 12, 13
    small = load_font("latin", fs - 2)
    cells = []
    for sample in samples:
        ext = next(e for e in IMAGE_EXTS if e in sample)
        rgb, _ = decode_image(sample[ext], display, "pad", sample.get("alpha.png"))
        meta = sample_meta(sample)
        caps = meta.get("captions") if isinstance(meta.get("captions"), dict) else None
        blocks: list[tuple[Font, str, list[str]]] = []
        for loc in locales if caps else ["txt"]:
            options = caps.get(loc, []) if caps else sample_captions(sample, meta)
            if not options:
                continue
            text = rng.choice(options)
            font = font_for(text, loc, fs)
            label = f"{loc}: "
            lines = wrap(text, font, cell_w - pad - int(small.getlength(label)) - 4, caption_lines)
            blocks.append((font, label, lines))
        key, style = str(meta.get("key", sample["__key__"])), str(meta.get("style") or "")
        head = key if not style or style in key else f"{style} · {key}"
        cells.append((Image.fromarray(rgb), head, blocks))
    line_h = fs + 5
    text_h = [line_h + sum(len(b[2]) for b in blocks) * line_h for _, _, blocks in cells]
    rows = math.ceil(len(cells) / cols) if cells else 0
    row_h = [display + 6 + max(text_h[r * cols : (r + 1) * cols], default=0) + pad for r in range(rows)]
    top = 34 if title else pad
    sheet = Image.new("RGB", (cols * (cell_w + pad) + pad, top + sum(row_h) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 9), title, fill=(30, 30, 30), font=font_for(title, "en", fs + 3))
    y = top
    for r in range(rows):
        for c, (im, head, blocks) in enumerate(cells[r * cols : (r + 1) * cols]):
            x = pad + c * (cell_w + pad)
            sheet.paste(im, (x + (cell_w - display) // 2, y))
            draw.rectangle(
                (x + (cell_w - display) // 2 - 1, y - 1, x + (cell_w + display) // 2, y + display),
                outline=(225, 225, 225),
            )
            ty = y + display + 6
            draw.text((x, ty), (wrap(head, small, cell_w, 1) or [""])[0], fill=(120, 120, 120), font=small)
            ty += line_h
            for font, label, lines in blocks:
                draw.text((x, ty + 2), label, fill=(150, 90, 30), font=small)
                lx = x + int(small.getlength(label)) + 4
                for line in lines:
                    draw.text((lx, ty), line, fill=(20, 20, 20), font=font)
                    ty += line_h
        y += row_h[r]
    return sheet


def save_png(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    path.write_bytes(buf.getvalue())
