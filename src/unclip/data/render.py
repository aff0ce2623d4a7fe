"""SVG rasterisation (resvg) to RGBA arrays, with a content-addressed cache of PNG files."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

_VIEWBOX = re.compile(r'viewBox="([^"]+)"')


def render(svg: str, size: int, view: tuple[float, float, float] | None = None) -> np.ndarray:
    """Render `svg` to a size×size RGBA array. `view` = (x, y, scale) in [0, 1] renders that window of the
    canvas only, so a 256 px window of a 1024 px render costs as much as a 256 px render."""
    import resvg_py

    if view is not None:
        x, y, s = view
        left, top, w, h = (float(v) for v in _VIEWBOX.search(svg).group(1).split())
        box = f'viewBox="{left + x * w:.6g} {top + y * h:.6g} {w * s:.6g} {h * s:.6g}"'
        svg = _VIEWBOX.sub(box, svg, count=1)
    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, skip_system_fonts=True)
    with Image.open(io.BytesIO(bytes(png))) as im:
        return np.asarray(im.convert("RGBA"))


def on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def cached_render(svg: str, size: int, cache_dir: Path) -> tuple[bytes, bytes]:
    """(RGB-on-white PNG, alpha PNG) for `svg` at `size`, rendered once and then read from the cache."""
    digest = hashlib.sha1(svg.encode()).hexdigest()
    folder = cache_dir / str(size) / digest[:2]
    rgb_path, alpha_path = folder / f"{digest}.png", folder / f"{digest}.alpha.png"
    if rgb_path.exists() and alpha_path.exists():
        return rgb_path.read_bytes(), alpha_path.read_bytes()
    rgba = render(svg, size)
    rgb, alpha = png_bytes(on_white(rgba)), png_bytes(rgba[..., 3])
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in ((rgb_path, rgb), (alpha_path, alpha)):
        # the same drawing can stand in two sets: workers rendering it at once each write a file of their own
        # and rename it in place (the same bytes either way)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return rgb, alpha
