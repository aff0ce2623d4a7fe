"""`unclip eval watermark`: how strong, how visible and how durable the invisible watermark is, measured on
the model's own images (docs/safety.md)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from unclip.safety.watermark import MAX_CHANGE, decode_watermark, embed_watermark, same_payload

Transform = Callable[[Image.Image], Image.Image]


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """A JPEG copy of `img` at `quality`, decoded again."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _scale(img: Image.Image, f: float) -> Image.Image:
    return img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.BICUBIC)


def _crop(img: Image.Image, keep: float, corner: bool = False) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * keep), round(h * keep)
    x0, y0 = (0, 0) if corner else ((w - cw) // 2, (h - ch) // 2)
    return img.crop((x0, y0, x0 + cw, y0 + ch))


TRANSFORMS: dict[str, Transform] = {
    "PNG as made": lambda im: im,
    "JPEG q90": lambda im: jpeg(im, 90),
    "JPEG q75": lambda im: jpeg(im, 75),
    "JPEG q50": lambda im: jpeg(im, 50),
    "resize 0.5x": lambda im: _scale(im, 0.5),
    "resize 0.75x": lambda im: _scale(im, 0.75),
    "resize 1.5x": lambda im: _scale(im, 1.5),
    "crop 10% (centre 90%)": lambda im: _crop(im, 0.9),
    "crop 25% (top-left 75%)": lambda im: _crop(im, 0.75, corner=True),
    "resize 0.5x + JPEG q75": lambda im: jpeg(_scale(im, 0.5), 75),
    "crop 10% + JPEG q75": lambda im: jpeg(_crop(im, 0.9), 75),
}


def periodic_share(diff: np.ndarray, max_period: int = 16) -> float:
    """The largest share of a mark's energy that repeats with a period of `max_period` px or less (energy at
    the harmonics of 1/p along both axes: what shows as a regular grid when zoomed in)."""
    power = np.abs(np.fft.fft2(diff - diff.mean())) ** 2
    n = diff.shape[0]
    total = max(float(power.sum()), 1e-12)
    return max(
        (float(power[:: n // p, :: n // p].sum()) / total for p in range(2, max_period + 1) if n % p == 0),
        default=0.0,
    )


def psnr(a: Image.Image, b: Image.Image) -> float:
    """`unclip.evaluation.metrics.psnr` of two PIL images."""
    import torch

    from unclip.evaluation.metrics import psnr as tensor_psnr

    def unit(im: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1

    return tensor_psnr(unit(a), unit(b))


def watermark_report(images: list[Image.Image], seed: int = 0) -> dict:
    """Mark each image with its own random payload, then report PSNR and the largest pixel change against the
    unmarked image, the mark's periodic share on flat grey, the share of copies (by transformation) in which
    the payload is read back, and false matches on the unmarked images and their JPEG copies."""
    rng = random.Random(seed)
    found = {name: 0 for name in TRANSFORMS}
    psnrs, changes, false = [], [], 0
    for img in images:
        img = img.convert("RGB")
        payload = b"UNCL" + bytes(rng.randrange(256) for _ in range(4))
        marked = embed_watermark(img, payload)
        psnrs.append(psnr(marked, img))
        changes.append(int(np.abs(np.asarray(marked, np.int16) - np.asarray(img, np.int16)).max()))
        for name, transform in TRANSFORMS.items():
            got, _, _ = decode_watermark(transform(marked))
            found[name] += got is not None and same_payload(got, payload)
        false += sum(decode_watermark(copy)[0] is not None for copy in (img, jpeg(img, 75)))
    flat = Image.new("RGB", (256, 256), (128, 128, 128))
    flat_marked = embed_watermark(flat, b"UNCL\x00\x01\x02\x03")
    n = len(images)
    return {
        "images": n,
        "size": f"{images[0].width}x{images[0].height}" if images else "",
        "max_change_allowed": MAX_CHANGE,
        "max_change": max(changes, default=0),
        "psnr_min": round(min(psnrs, default=0.0), 2),
        "psnr_mean": round(float(np.mean(psnrs)) if psnrs else 0.0, 2),
        "flat_grey_psnr": round(psnr(flat_marked, flat), 2),
        "flat_grey_periodic_share": round(
            periodic_share(np.asarray(flat_marked, np.float64)[..., 1] - 128), 3
        ),
        "survival": {name: round(100 * k / max(n, 1), 1) for name, k in found.items()},
        "false_matches": f"{false}/{2 * n}",
    }


def eval_watermark(engine, data: Path, n: int = 32, size: int = 256, seed: int = 0,
                   out_dir: Path | None = None) -> dict:  # fmt: skip
    """`watermark_report` on n images the model draws for test-split captions (4 per caption)."""
    from unclip.evaluation.stages import caption, load_images, sample_indices

    test = load_images(data, 64, "test")
    images: list[Image.Image] = []
    for i in sample_indices(len(test), (n + 3) // 4, seed):
        images += engine.generate(caption(test.meta[i]), n=4, size=size, seed=seed + i)
    images = images[:n]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for k, im in enumerate(images):
            im.save(out_dir / f"unmarked_{k:03d}.png")
    return watermark_report(images, seed)
