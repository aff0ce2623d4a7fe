"""Safe decoding of uploaded images and masks, and the realistic-face check for edits and variations.

    img = read_image_upload(data, param="image")         # 8-bit RGB or RGBA PIL image, or UploadError
    mask = read_mask_upload(data, size=img.size)          # RGBA, transparent = area to repaint
    contains_real_face(img)                               # True for photos with realistic human faces

Order of checks (cheap first, nothing is decoded before its size is known to be safe):

1. bytes: empty, over the byte limit (4 MB by default, like OpenAI's API);
2. signature: must be a PNG (``\\x89PNG``), whatever the file name says;
3. header only (IHDR): width and height, degenerate sizes, pixel limit (decompression bombs), square;
4. animation (APNG ``acTL``) is refused;
5. full decode with Pillow's own bomb guard, CRC checks, truncation and any decoder error -> 400;
6. conversion to 8-bit: 16-bit and 32-bit greyscale are scaled, palette and greyscale(+alpha) become RGB(A),
   1-bit becomes RGB, 16-bit RGB(A) is reduced to 8 bits.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from unclip.engine.masks import REPAINT_ALPHA, has_area_to_edit

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "UploadError",
    "contains_real_face",
    "probe_png",
    "read_image_upload",
    "read_mask_upload",
    "upload_to_store",
]

MAX_BYTES = 4 * 1024 * 1024  # "less than 4MB", as OpenAI's API
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class UploadError(ValueError):
    """A bad upload: the server answers 400 with OpenAI's error shape (message, param, code)."""

    def __init__(self, message: str, param: str | None = "image", code: str = "invalid_image") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


def _sniff(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIC"
    if data.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or b"<svg" in data[:256].lower():
        return "SVG"
    if data[:4] == b"%PDF":
        return "PDF"
    if data[:2] == b"PK":
        return "ZIP"
    return "unknown"


def probe_png(data: bytes) -> tuple[int, int, int, int, bool]:
    """Read the PNG header without decoding: (width, height, bit depth, colour type, animated)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise UploadError(
            "Invalid input image - the PNG header is missing or truncated.", code="invalid_image"
        )
    width, height, depth, ctype = struct.unpack(">IIBB", data[16:26])
    ihdr_crc = struct.unpack(">I", data[29:33])[0]
    if zlib.crc32(data[12:29]) & 0xFFFFFFFF != ihdr_crc:
        raise UploadError("Invalid input image - the PNG header is corrupt.", code="invalid_image")
    animated = any(name == b"acTL" for name, _ in _header_chunks(data))  # APNG
    return width, height, depth, ctype, animated


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by PNG colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def pixel_data_short(data: bytes, width: int, height: int, depth: int, ctype: int) -> bool:
    """Whether the IDAT stream inflates to fewer bytes than the header's size needs: Pillow fills the missing
    rows with black and says nothing when the stream itself ends cleanly."""
    bits = depth * _CHANNELS.get(ctype, 4)
    if data[28:29] == b"\x01":  # Adam7: seven passes over sub-grids
        passes = [(-(-(width - x0) // dx), -(-(height - y0) // dy)) for x0, y0, dx, dy in _ADAM7]
    else:
        passes = [(width, height)]
    need = sum(h * (1 + -(-w * bits // 8)) for w, h in passes if w > 0 and h > 0)
    inflate, got, pos = zlib.decompressobj(), 0, 8
    while pos + 8 <= len(data) and got < need:
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 4 : pos + 8] == b"IDAT":
            chunk = data[pos + 8 : pos + 8 + length]
            try:
                while chunk and got < need:  # in bounded pieces: a bomb inflates no further than it must
                    got += len(inflate.decompress(chunk, 1 << 20))
                    chunk = inflate.unconsumed_tail
            except zlib.error:
                return False  # a broken stream: Pillow's own error names it
        pos += 12 + length
    return got < need


def _header_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(name, data) of the PNG's chunks before its first IDAT, read without decoding."""
    pos = 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        name = data[pos + 4 : pos + 8]
        if name in (b"IDAT", b"IEND"):
            return
        yield name, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _colour_key(data: bytes) -> bytes | None:
    """The tRNS chunk's data (before the first IDAT, where PNG puts it), or None."""
    return next((body for name, body in _header_chunks(data) if name == b"tRNS"), None)


def _keyed(img: Image.Image, depth: int, ctype: int, key: bytes, param: str) -> Image.Image:
    """An 8-bit RGBA image from a greyscale or RGB PNG whose colour key (tRNS) is at another depth than 8,
    which Pillow reads wrong (it compares 16-bit keys with 8-bit pixels and never scales 1-4 bit keys)."""
    if ctype == 2 or len(key) < 2:  # Pillow keeps only the high byte of 16-bit RGB: the key cannot be matched
        raise UploadError(
            f"Invalid input image - '{param}' is a 16-bit RGB PNG with a colour key (tRNS); save it with an "
            "alpha channel (RGBA) or at 8 bits.",
            param,
            "invalid_image_format",
        )
    value = struct.unpack(">H", key[:2])[0]
    img.info.pop("transparency", None)
    if depth == 16:
        keyed = np.asarray(img, dtype=np.int32) == value
    else:  # 1, 2 or 4 bits, which Pillow spreads over 0-255
        keyed = np.asarray(img.convert("L")) == round(value * 255 / (2**depth - 1))
    out = _to_8bit(img).convert("RGBA")
    out.putalpha(Image.fromarray(np.where(keyed, 0, 255).astype(np.uint8), "L"))
    return out


def _to_8bit(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGBA" or (mode == "RGB" and "transparency" not in img.info):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # float32 in place: a 4096x4096 upload costs 64 MB here, not the 400 MB of float64 temporaries
        arr = np.array(img, dtype=np.float32)
        maxval = 65535.0 if mode != "F" else max(1.0, float(arr.max()))
        if mode == "I" and arr.max() <= 255:
            maxval = 255.0
        arr *= 255.0 / maxval
        np.clip(np.rint(arr, out=arr), 0, 255, out=arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode in ("LA", "PA", "La", "RGBa"):
        return img.convert("RGBA")
    if mode == "L" and "transparency" in img.info:
        return img.convert("RGBA")
    if mode == "RGB" and "transparency" in img.info:
        return img.convert("RGBA")
    if mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    return img.convert("RGBA")


def _decode(data: bytes, param: str, require_square: bool, max_bytes: int) -> Image.Image:
    if not data:
        raise UploadError(f"The uploaded '{param}' is empty.", param, "invalid_image")
    if len(data) >= max_bytes:
        raise UploadError(
            f"Invalid input image - '{param}' must be less than {max_bytes // (1024 * 1024)} MB, "
            f"got {len(data) / (1024 * 1024):.1f} MB.",
            param,
            "image_too_large",
        )
    if not data.startswith(PNG_SIGNATURE):
        kind = _sniff(data)
        found = f"a {kind} file" if kind != "unknown" else "not an image"
        raise UploadError(
            f"Invalid input image - '{param}' must be a PNG file, but this is {found}.",
            param,
            "invalid_image_format",
        )
    width, height, depth, ctype, animated = probe_png(data)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UploadError(
            f"Invalid input image - '{param}' is {width}x{height}; "
            f"images must be at least {MIN_SIDE}x{MIN_SIDE}.",
            param,
            "invalid_image_size",
        )
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UploadError(
            f"Invalid input image - '{param}' is {width}x{height}; "
            f"the limit is {MAX_SIDE}x{MAX_SIDE} pixels.",
            param,
            "image_too_large",
        )
    if require_square and width != height:
        raise UploadError(
            f"Invalid input image - '{param}' must be square, got {width}x{height}.",
            param,
            "invalid_image_shape",
        )
    if animated:
        raise UploadError(
            f"Invalid input image - '{param}' is an animated PNG.", param, "invalid_image_format"
        )
    if pixel_data_short(data, width, height, depth, ctype):
        raise UploadError(
            f"Invalid input image - '{param}' has fewer pixels than its {width}x{height} header says "
            "(cut off or badly written).",
            param,
            "invalid_image",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # verify() checks chunk CRCs and structure; it leaves the image unusable, so open again to load
            probe = Image.open(io.BytesIO(data), formats=["PNG"])
            probe.verify()
            img = Image.open(io.BytesIO(data), formats=["PNG"])
            if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
                raise UploadError(
                    f"Invalid input image - '{param}' is an animated PNG.", param, "invalid_image_format"
                )
            if img.size != (width, height):
                raise UploadError(f"Invalid input image - '{param}' has an inconsistent header.", param)
            img.load()
            turn = orientation(img)
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(
            f"Invalid input image - '{param}' is too large to decode safely.", param, "image_too_large"
        ) from exc
    except MemoryError as exc:
        raise UploadError(
            f"Invalid input image - '{param}' is too large to decode.", param, "image_too_large"
        ) from exc
    except Exception as exc:  # truncated, corrupt, bad CRC, zlib errors, text-chunk bombs...
        detail = str(exc).strip() or type(exc).__name__
        if isinstance(exc, UnidentifiedImageError):  # its message names a Python object, not the file
            detail = "Pillow cannot read its chunks as a PNG"
        raise UploadError(
            f"Invalid input image - '{param}' could not be decoded ({detail}).", param, "invalid_image"
        ) from exc
    return upright(to_8bit(img, data, param), turn)


# EXIF orientation (a PNG's eXIf chunk) → the transpose that shows the image as browsers and `unclip edit` do
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(img: Image.Image) -> int:
    """The image's EXIF orientation (1, upright, when it has none or an unreadable one, as browsers take it)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a broken eXIf chunk: shown as stored
        return 1
    return value if value in _UPRIGHT else 1


def upright(img: Image.Image, turn: int) -> Image.Image:
    return img.transpose(_UPRIGHT[turn]) if turn in _UPRIGHT else img


def to_8bit(img: Image.Image, data: bytes, param: str = "image") -> Image.Image:
    """8-bit RGB or RGBA from a decoded image and its file's bytes: a PNG's colour key (tRNS) at another depth
    than 8 is transparency too (the server's uploads and the command line read files alike)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 33:
        _, _, depth, ctype = struct.unpack(">IIBB", data[16:26])
        key = _colour_key(data) if ctype in (0, 2) and depth != 8 else None
        if key is not None:
            return _keyed(img, depth, ctype, key, param)
    return _to_8bit(img)


def read_image_upload(
    data: bytes, param: str = "image", require_square: bool = True, max_bytes: int = MAX_BYTES
) -> Image.Image:
    """Decode an uploaded PNG safely: an 8-bit RGB or RGBA image, or `UploadError` (a 400 answer)."""
    return _decode(bytes(data), param, require_square, max_bytes)


def upload_to_store(data: bytes, checked: Image.Image) -> bytes:
    """The PNG to keep for an upload that `read_image_upload` or `read_mask_upload` read as `checked`: the
    upload itself when it is already that image (8-bit RGB or RGBA, upright), else a PNG of `checked`, so that
    the engine gets what was checked (a greyscale mask's alpha, a 16-bit image's 8 bits, a colour key's
    transparency, an EXIF orientation's turn)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as raw:  # reads the header, decodes nothing
        as_checked = raw.mode == checked.mode and "transparency" not in raw.info
        as_checked = as_checked and orientation(raw) == 1  # else stored upright, as it was checked
    if as_checked:
        return data
    out = io.BytesIO()
    checked.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def read_mask_upload(
    data: bytes, size: tuple[int, int], param: str = "mask", max_bytes: int = MAX_BYTES
) -> Image.Image:
    """Decode a mask: a PNG of the image's size, returned as RGBA (alpha below REPAINT_ALPHA = area to edit).

    A mask with an alpha channel (RGBA, LA, palette with transparency) is used as is. A greyscale mask without
    alpha is read as the alpha itself (black = transparent = edit). An opaque RGB mask has nothing to edit and
    is refused.
    """
    raw = _decode(bytes(data), param, require_square=False, max_bytes=max_bytes)
    if raw.size != tuple(size):
        raise UploadError(
            f"Invalid mask - '{param}' is {raw.width}x{raw.height} but the image is {size[0]}x{size[1]}; "
            "the mask and the image must have the same dimensions.",
            param,
            "invalid_mask_size",
        )
    out = None
    if raw.mode == "RGBA":
        out = raw
    else:  # no alpha channel: greyscale masks give their luminance as alpha
        src = Image.open(io.BytesIO(data))
        if src.mode in ("L", "I;16", "I", "1") and "transparency" not in src.info:
            out = raw.convert("RGBA")
            out.putalpha(raw.convert("L"))
    if out is not None and has_area_to_edit(out):
        return out
    raise UploadError(
        f"Invalid mask - '{param}' has no transparent pixels (alpha below {REPAINT_ALPHA}): the mask must be a PNG "
        "with an alpha channel (RGBA or LA) whose transparent areas show where to edit.",
        param,
        "invalid_mask",
    )


def contains_real_face(image: Image.Image) -> bool:
    """True when the image looks like a photo with a realistic human face (see `unclip.safety.faces`)."""
    from unclip.safety.faces import contains_real_face as _impl

    return _impl(image)
