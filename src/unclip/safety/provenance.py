"""Provenance of generated images: PNG metadata, an invisible watermark, an optional visible signature.

    png = encode_png(image, {"model": "unclip-emoji", "seed": 7, "request_id": "req_123"}, signature=False)
    verify(png) -> VerifyResult(from_unclip=True, metadata={...}, watermark="554e434c1a2b3c4d", ...)

Metadata: PNG text chunks ``unclip:model``, ``unclip:seed``, ``unclip:created`` (UTC ISO time),
``unclip:request_id`` and any other keys given, ``Software``, and ``unclip:signature``, an HMAC-SHA256 of the
other ``unclip:*`` chunks keyed by ``UNCLIP_PROVENANCE_KEY`` (set it on the server: without it a built-in key
is used and anyone can forge the chunks). Metadata is lost as soon as an image is re-encoded.

Watermark (`unclip.safety.watermark`): a 64-bit payload, ``b"UNCL"`` + the first four bytes of
SHA-256(request id), spread over a faint smooth luma pattern that moves no pixel by more than 2/255 and
survives JPEG, halving and cropping. Images under 256 px a side carry metadata only.

`verify` reads the metadata, checks its signature and looks for the watermark in the image as it is and
scaled back to the sizes it probably had.
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

from unclip.safety.watermark import (
    MAGIC,
    MIN_SIDE,
    decode_watermark,
    embed_watermark,
    payload_matches,
    read_watermark,
)

__all__ = [
    "MAGIC",
    "VerifyResult",
    "add_signature",
    "decode_watermark",
    "embed_watermark",
    "encode_png",
    "has_signature",
    "payload_for",
    "verify",
]

MAX_VERIFY_PIXELS = 4096 * 4096
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


def _pixels(image: Image.Image) -> str:
    """A digest of the decoded pixels, signed with the rest: the fields copied onto another image (or onto
    this one, edited) no longer check out."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


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
    fields["unclip:watermark"] = payload_for(request_id).hex() if min(image.size) >= MIN_SIDE else "none"
    fields["unclip:pixels"] = _pixels(marked)
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
        """The result as JSON. Metadata whose signature does not check out is reported apart, as
        `unverified_metadata`, so that it never reads as this server's word."""
        return {
            "from_unclip": self.from_unclip,
            "metadata": self.metadata if self.metadata_valid else {},
            "unverified_metadata": {} if self.metadata_valid else self.metadata,
            "metadata_valid": self.metadata_valid,
            "watermark": self.watermark,
            "watermark_found_by": self.watermark_found_by,
            "watermark_agreement": round(self.watermark_agreement, 3),
            "signature": self.signature,
            "request_id_matches": self.request_id_matches,
        }


def _signed_fields(text: dict) -> tuple[dict[str, str], bool]:
    """The `unclip:*` fields of an image's text, and whether their signature checks out."""
    meta = {k: str(v) for k, v in text.items() if isinstance(k, str) and k.startswith("unclip:")}
    valid = bool(meta.get("unclip:signature")) and hmac.compare_digest(  # bytes: str must be ASCII there
        meta.get("unclip:signature", "").encode("utf-8", "replace"), _sign(meta).encode()
    )
    return meta, valid


def read_metadata(png: bytes) -> tuple[dict[str, str], bool]:
    """The provenance fields of one of this server's own PNGs (names without `unclip:`) and whether they are
    signed by its key; no watermark reading (see `verify` for images from elsewhere)."""
    # the encoder writes the fields before the pixels: no need to decode those
    meta, valid = _signed_fields(Image.open(io.BytesIO(png)).info)
    return {k.removeprefix("unclip:"): v for k, v in meta.items()}, valid


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
    meta, metadata_valid = _signed_fields(text)
    # signed fields are this image's only if they sign its pixels (or, written before they did, its size)
    if "unclip:pixels" in meta:
        metadata_valid = metadata_valid and hmac.compare_digest(meta["unclip:pixels"], _pixels(img))
    else:
        metadata_valid = metadata_valid and meta.get("unclip:size") == f"{img.width}x{img.height}"
    hint = None
    size = meta.get("unclip:size", "")
    if "x" in size:
        try:
            hint = int(size.split("x")[0])
        except ValueError:
            hint = None
        if hint is not None and not 0 < hint <= 1 << 16:  # an unsigned field: anything may be written there
            hint = None
    found = read_watermark(img, hint)
    payload = found.payload
    request_match = None
    if payload is not None and "unclip:request_id" in meta:
        request_match = payload_matches(found, payload_for(meta["unclip:request_id"]))
    return VerifyResult(
        from_unclip=bool(payload is not None or metadata_valid),
        metadata={k.removeprefix("unclip:"): v for k, v in meta.items()},
        watermark=payload.hex() if payload is not None else None,
        metadata_valid=metadata_valid,
        watermark_found_by=found.how if payload is not None else "",
        watermark_agreement=found.agreement,
        signature=has_signature(img) if min(img.size) >= 64 else False,
        request_id_matches=request_match,
    )
