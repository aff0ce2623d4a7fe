"""Provenance of generated images: PNG metadata, an invisible watermark, an optional visible signature.

    png = encode_png(image, {"model": "unclip-emoji", "seed": 7, "request_id": "req_123"}, signature=False)
    verify(png) -> VerifyResult(from_unclip=True, metadata={...}, watermark="554e434c1a2b3c4d", ...)

Metadata: PNG text chunks ``unclip:model``, ``unclip:seed``, ``unclip:created`` (UTC ISO time),
``unclip:request_id`` and any other keys given, ``Software``, and ``unclip:signature``, an HMAC-SHA256 of the
other ``unclip:*`` chunks keyed by ``UNCLIP_PROVENANCE_KEY`` (set it on the server: without it a built-in key
is used and anyone can forge the chunks). Metadata is lost as soon as an image is re-encoded.

Watermark: invisible-watermark's ``dwtDct`` scheme, as Stable Diffusion uses it: a one-level Haar DWT of the
U (chroma) channel, 4x4 blocks of the LL band, one bit per block by quantising the block's largest
coefficient (scale 36), the 64-bit payload tiled over all blocks. The same payload also goes into the Y
(luma) channel at scale 20 (the package's ``scales[0]``): JPEG's 4:2:0 chroma subsampling wipes the U mark
even at quality 95, the luma mark survives it on textured images. Each channel is decoded on its own.
Payload: ``b"UNCL"`` + the first four bytes
of SHA-256(request id). Embedding and decoding are vectorised NumPy re-implementations of the package's
``EmbedMaxDct`` (the package's ``WatermarkDecoder`` reads our marks; a test checks it). Three fixes over the
package's encoder: the colour conversion runs in floating point (the package round-trips through uint8 YUV,
which wraps saturated emoji colours), the marked coefficient is kept the block's largest (see `_embed_ll`),
and it is vectorised (60-280 ms at 1024 px on a loaded 2-core machine, against ~1 s of Python loops).
``WatermarkEncoder`` refuses images under 256x256; the scheme itself only needs 64 blocks, so images from
64x64 up are marked (at 64 px the payload fits exactly once, so it survives far less than at 512 px). Images
smaller than 64 px carry metadata only.

`verify` decodes the image as it is, then resized back to the server's output sizes (resizing moves the block
grid) and re-placed at several anchors inside those sizes (cropping shifts it). An image counts as marked when
at most 3 of the 32 magic bits are wrong (chance of a false match per try about 1.3e-6).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

__all__ = [
    "MAGIC",
    "STANDARD_SIZES",
    "VerifyResult",
    "add_signature",
    "decode_watermark",
    "embed_watermark",
    "encode_png",
    "has_signature",
    "payload_for",
    "verify",
]

MAGIC = b"UNCL"
WM_BITS = 64
SCALE = 36.0  # U channel, as the package's default (scales=[0, 36, 36] marks U only)
Y_SCALE = 20.0  # Y channel, lighter: luma survives JPEG's chroma subsampling
BLOCK = 4
MIN_WATERMARK_SIDE = 64
MAX_MAGIC_ERRORS = 3
MAX_VERIFY_PIXELS = 4096 * 4096
STANDARD_SIZES = (64, 128, 256, 512, 768, 1024)
# DALL·E 2's colour signature: five squares in the bottom-right corner
SIGNATURE_COLOURS = ((255, 255, 102), (66, 255, 255), (81, 218, 76), (255, 110, 60), (60, 70, 255))
_DEFAULT_KEY = b"unclip-provenance-default-key"


_configured_key: bytes | None = None


def use_key(key: bytes | None) -> None:
    """Sign and check metadata with `key` from now on in this process (the server's own, kept in its data
    folder); None goes back to UNCLIP_PROVENANCE_KEY or the built-in key."""
    global _configured_key
    _configured_key = key


def _key() -> bytes:
    if _configured_key:
        return _configured_key
    k = os.environ.get("UNCLIP_PROVENANCE_KEY")
    return k.encode() if k else _DEFAULT_KEY


def payload_for(request_id: str | None) -> bytes:
    digest = hashlib.sha256((request_id or "").encode()).digest()[:4]
    return MAGIC + digest


def _bits(payload: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).astype(np.int64)


# --- watermark ------------------------------------------------------------------------------------------


def _u_channel(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return 0.492 * (b - y) + 128.0  # OpenCV's BGR2YUV U channel


def _y_channel(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def _ll(u: np.ndarray) -> np.ndarray:
    return (u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) / 2.0  # Haar LL (pywt 'haar')


def _embed_ll(ll: np.ndarray, bits: np.ndarray, scale: float = SCALE, margin: float = 6.0) -> np.ndarray:
    """Quantise each 4x4 LL block's largest coefficient to carry its bit (dwtDct's rule, vectorised).

    Like the package's ``EmbedMaxDct.diffuse_dct_matrix`` the largest |coefficient| (DC excluded) is set to
    ``(k + 0.25 + 0.5 * bit) * scale``; unlike it, k is chosen so that the coefficient stays the largest by
    ``margin``: lowering it for a 0 bit no longer hands the block to another coefficient (which made a third
    of the package's zero bits read back wrong). The package's decoder reads the result unchanged.
    """
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    out = ll.copy()
    view = out[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    blocks = view.reshape(rows * cols, BLOCK * BLOCK).copy()
    n = len(blocks)
    mags = np.abs(blocks[:, 1:])
    pos = np.argmax(mags, axis=1)
    v = mags[np.arange(n), pos]
    others = mags.copy()
    others[np.arange(n), pos] = -1.0
    second = others.max(axis=1)
    b = bits[np.arange(n) % len(bits)].astype(np.float64)
    k0 = np.floor(v / scale)
    cands = np.stack([(k0 + d + 0.25 + 0.5 * b) * scale for d in (-1.0, 0.0, 1.0, 2.0)], axis=1)
    ok = (cands >= second[:, None] + margin) & (cands >= 0)
    dist = np.where(ok, np.abs(cands - v[:, None]), np.inf)
    q = cands[np.arange(n), np.argmin(dist, axis=1)]
    sign = np.where(blocks[np.arange(n), pos + 1] < 0, -1.0, 1.0)
    blocks[np.arange(n), pos + 1] = sign * q
    view[...] = blocks.reshape(rows, cols, BLOCK, BLOCK)
    return out


def _headroom(rgb: np.ndarray, low: float = 16.0, high: float = 235.0, slope: float = 0.4) -> np.ndarray:
    """Soft-knee the extremes (255 → 243, 0 → 10) so the mark can move pixels both ways: on pure white or
    black, clipping to 8 bits would erase it, and most emoji art sits on white."""
    out = rgb.copy()
    out = np.where(out > high, high + (out - high) * slope, out)
    return np.where(out < low, low - (low - out) * slope, out)


def embed_watermark(image: Image.Image, payload: bytes) -> Image.Image:
    """Embed `payload` (8 bytes) with the dwtDct scheme; returns a new image of the same mode."""
    if min(image.size) < MIN_WATERMARK_SIDE:
        return image.copy()
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    rgb = _headroom(np.asarray(image.convert("RGB"), dtype=np.float64))
    h4, w4 = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    bits = _bits(payload)
    out = rgb.copy()
    for _ in range(3):  # rounding and clipping to 8 bits can undo a few blocks: re-embed on the result
        # U channel (the package's dwtDct): only U changes, so B moves and G compensates to keep Y and V
        u = _u_channel(out[:h4, :w4])
        ll = _ll(u)
        du = np.repeat(np.repeat((_embed_ll(ll, bits, SCALE) - ll) / 2.0, 2, axis=0), 2, axis=1)
        db = du / 0.492
        out[:h4, :w4, 2] += db
        out[:h4, :w4, 1] -= 0.114 * db / 0.587
        # Y channel (scales[0] in the package), lighter: R, G and B move together, U and V stay put
        y = _y_channel(out[:h4, :w4])
        lly = _ll(y)
        dy = np.repeat(np.repeat((_embed_ll(lly, bits, Y_SCALE) - lly) / 2.0, 2, axis=0), 2, axis=1)
        out[:h4, :w4] += dy[..., None]
        out = np.clip(np.round(out), 0, 255)
        if all(np.all((_decode_scores(out, channel=c) > 0.5) == bits) for c in ("u", "y")):
            break
    result = Image.fromarray(out.astype(np.uint8), "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


def _decode_scores(
    rgb: np.ndarray, valid: np.ndarray | None = None, n_bits: int = WM_BITS, channel: str = "u"
) -> np.ndarray:
    """Per-bit mean of the block votes (0..1), as the package's EmbedMaxDct.decode computes them."""
    h4, w4 = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    plane = rgb[:h4, :w4].astype(np.float64)
    ll = _ll(_u_channel(plane) if channel == "u" else _y_channel(plane))
    scale = SCALE if channel == "u" else Y_SCALE
    rows, cols = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    blocks = ll[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(rows * cols, BLOCK * BLOCK)
    pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1
    val = np.abs(blocks[np.arange(len(blocks)), pos])
    votes = ((val % scale) > 0.5 * scale).astype(np.float64)
    index = np.arange(len(blocks)) % n_bits
    weight = np.ones(len(blocks)) if valid is None else valid.reshape(-1).astype(np.float64)
    sums = np.bincount(index, weights=votes * weight, minlength=n_bits)
    counts = np.bincount(index, weights=weight, minlength=n_bits)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1e-9), 0.5)


def _match(scores: np.ndarray) -> tuple[bool, int, bytes]:
    bits = (scores > 0.5).astype(np.uint8)
    magic_errors = int(np.sum(bits[:32] != _bits(MAGIC)))
    return magic_errors <= MAX_MAGIC_ERRORS, magic_errors, np.packbits(bits).tobytes()


def _candidates(img: Image.Image, hint: int | None) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """The image as is, resized to the server's sizes, and re-placed into them (crops)."""
    rgb_img = img.convert("RGB")
    w, h = rgb_img.size
    out: list[tuple[str, np.ndarray, np.ndarray | None]] = [("as is", np.asarray(rgb_img), None)]
    sizes = list(STANDARD_SIZES)
    if hint and hint not in sizes:
        sizes.insert(0, hint)
    if hint:
        sizes.sort(key=lambda s: s != hint)
    for s in sizes:
        if (s, s) != (w, h) and min(w, h) >= 32:
            out.append((f"resized to {s}", np.asarray(rgb_img.resize((s, s), Image.BICUBIC)), None))
    arr = np.asarray(rgb_img)
    for s in sizes:
        if s < w or s < h or (s, s) == (w, h):
            continue
        anchors = {
            "top-left": (0, 0),
            "centre": ((s - w) // 2, (s - h) // 2),
            "bottom-right": (s - w, s - h),
            "top-right": (s - w, 0),
            "bottom-left": (0, s - h),
        }
        for name, (x0, y0) in anchors.items():
            canvas = np.zeros((s, s, 3), dtype=np.uint8)
            canvas[y0 : y0 + h, x0 : x0 + w] = arr
            # only 8x8-pixel blocks that lie wholly inside the crop vote
            inside = np.zeros((s, s), dtype=bool)
            inside[y0 : y0 + h, x0 : x0 + w] = True
            n = s // 8
            valid = inside[: n * 8, : n * 8].reshape(n, 8, n, 8).all(axis=(1, 3))
            out.append((f"crop placed {name} in {s}", canvas, valid))
    return out


def decode_watermark(image: Image.Image, size_hint: int | None = None) -> tuple[bytes | None, str, float]:
    """(payload or None, how it was found, bit agreement of the magic 0..1)."""
    if min(image.size) < 32:
        return None, "too small", 0.0
    best = 0.0
    for how, rgb, valid in _candidates(image, size_hint):
        if valid is not None and valid.sum() < WM_BITS:
            continue
        for channel in ("u", "y"):
            ok, errors, payload = _match(_decode_scores(rgb, valid, channel=channel))
            best = max(best, 1 - errors / 32)
            if ok:
                return payload, f"{how} ({channel.upper()} channel)", 1 - errors / 32
    return None, "not found", best


# --- visible signature ----------------------------------------------------------------------------------


def _signature_geometry(w: int, h: int) -> tuple[int, int, int]:
    side = max(2, round(min(w, h) / 64))
    return side, w - 5 * side, h - side


def add_signature(image: Image.Image) -> Image.Image:
    """DALL·E 2's colour bar in the bottom-right corner (five squares, 1/64 of the side each)."""
    out = image.copy()
    side, x0, y0 = _signature_geometry(*out.size)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(out)
    for i, colour in enumerate(SIGNATURE_COLOURS):
        fill = (*colour, 255) if out.mode == "RGBA" else colour
        draw.rectangle([x0 + i * side, y0, x0 + (i + 1) * side - 1, y0 + side - 1], fill=fill)
    return out


def has_signature(image: Image.Image, tolerance: int = 48) -> bool:
    rgb = image.convert("RGB")
    side, x0, y0 = _signature_geometry(*rgb.size)
    arr = np.asarray(rgb).astype(int)
    for i, colour in enumerate(SIGNATURE_COLOURS):
        cx, cy = x0 + i * side + side // 2, y0 + side // 2
        if np.abs(arr[cy, cx] - np.array(colour)).max() > tolerance:
            return False
    return True


# --- metadata -------------------------------------------------------------------------------------------


def _sign(fields: dict[str, str]) -> str:
    body = json.dumps({k: fields[k] for k in sorted(fields) if k != "unclip:signature"}, sort_keys=True)
    return hmac.new(_key(), body.encode(), hashlib.sha256).hexdigest()


def encode_png(
    image: Image.Image,
    metadata: dict[str, Any] | None = None,
    signature: bool = False,
    compress_level: int = 3,
) -> bytes:
    """PNG bytes with provenance text chunks, the invisible watermark and, optionally, the colour bar."""
    from unclip import __version__

    metadata = dict(metadata or {})
    metadata.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    request_id = str(metadata.get("request_id") or "")
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if signature:
        image = add_signature(image)
    marked = embed_watermark(image, payload_for(request_id))
    fields = {f"unclip:{k}": str(v) for k, v in metadata.items() if v is not None}
    fields["unclip:size"] = f"{image.width}x{image.height}"
    fields["unclip:watermark"] = (
        payload_for(request_id).hex() if min(image.size) >= MIN_WATERMARK_SIDE else "none"
    )
    fields["unclip:signature"] = _sign(fields)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"unclip {__version__}")
    for k, v in fields.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    marked.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=compress_level)
    return buf.getvalue()


@dataclass
class VerifyResult:
    from_unclip: bool
    metadata: dict[str, str] = field(default_factory=dict)
    watermark: str | None = None  # payload hex when the watermark was found
    metadata_valid: bool = False  # the HMAC over the unclip:* chunks checks out
    watermark_found_by: str = ""
    watermark_agreement: float = 0.0
    signature: bool = False  # the visible colour bar is present
    request_id_matches: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_unclip": self.from_unclip,
            "metadata": self.metadata,
            "metadata_valid": self.metadata_valid,
            "watermark": self.watermark,
            "watermark_found_by": self.watermark_found_by,
            "watermark_agreement": round(self.watermark_agreement, 3),
            "signature": self.signature,
            "request_id_matches": self.request_id_matches,
        }


def verify(image_or_bytes: Image.Image | bytes | bytearray | str | os.PathLike[str]) -> VerifyResult:
    """Say whether an image came from this server: signed metadata and/or the invisible watermark.

    Any format Pillow reads is accepted (JPEG copies too). Raises ValueError for images over 4096x4096 pixels
    and PIL.UnidentifiedImageError (an OSError) for data that is not an image.
    """
    if isinstance(image_or_bytes, Image.Image):
        img = image_or_bytes
    else:
        data = (
            bytes(image_or_bytes)
            if isinstance(image_or_bytes, bytes | bytearray)
            else open(image_or_bytes, "rb").read()  # noqa: SIM115 - read and close at once
        )
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ValueError(f"image too large to verify ({exc})") from exc
        # untrusted input (the verify endpoint): refuse bombs from the header, before decoding
        if img.width * img.height > MAX_VERIFY_PIXELS:
            raise ValueError(f"image too large to verify: {img.width}x{img.height}")
        img.load()
    text = dict(getattr(img, "text", {}) or {}) if hasattr(img, "text") else dict(img.info)
    meta = {k: str(v) for k, v in text.items() if isinstance(k, str) and k.startswith("unclip:")}
    metadata_valid = bool(meta.get("unclip:signature")) and hmac.compare_digest(
        meta.get("unclip:signature", ""), _sign(meta)
    )
    hint = None
    size = meta.get("unclip:size", "")
    if "x" in size:
        try:
            hint = int(size.split("x")[0])
        except ValueError:
            hint = None
    payload, how, agreement = decode_watermark(img, hint)
    request_match = None
    if payload is not None and "unclip:request_id" in meta:
        request_match = payload == payload_for(meta["unclip:request_id"])
    return VerifyResult(
        from_unclip=bool(payload is not None or metadata_valid),
        metadata={k.removeprefix("unclip:"): v for k, v in meta.items()},
        watermark=payload.hex() if payload is not None else None,
        metadata_valid=metadata_valid,
        watermark_found_by=how if payload is not None else "",
        watermark_agreement=agreement,
        signature=has_signature(img) if min(img.size) >= 64 else False,
        request_id_matches=request_match,
    )
