from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unclip.safety.uploads import (
    UploadError,
    probe_png,
    read_image_upload,
    read_mask_upload,
    upload_to_store,
)


def png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, idat: bytes = b"", extra: bytes = b"") -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- usable inputs are converted to 8-bit RGB(A) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "mode"),
    [
        (lambda: Image.new("RGB", (64, 64), (10, 200, 30)), "RGB"),
        (lambda: Image.new("RGBA", (64, 64), (10, 200, 30, 0)), "RGBA"),
        (lambda: Image.new("L", (64, 64), 128), "RGB"),
        (lambda: Image.new("LA", (64, 64), (128, 50)), "RGBA"),
        (lambda: Image.new("1", (64, 64), 1), "RGB"),
        (lambda: Image.new("RGB", (64, 64), (255, 0, 0)).convert("P"), "RGB"),
    ],
)
def test_modes_become_8bit(make, mode: str) -> None:  # type: ignore[no-untyped-def]
    img = read_image_upload(png(make()))
    assert img.mode == mode and img.size == (64, 64)


def test_sixteen_bit_greyscale_is_scaled() -> None:
    arr = np.full((32, 32), 65535, dtype=np.uint16)
    arr[:16] = 32896  # ~ 128 in 8 bits
    img = read_image_upload(png(Image.fromarray(arr)))
    assert img.mode == "RGB"
    px = np.asarray(img)
    assert px[20, 0, 0] == 255 and abs(int(px[0, 0, 0]) - 128) <= 1


def test_palette_with_transparency_keeps_alpha() -> None:
    p = Image.new("P", (32, 32), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(1, (0, 0, 16, 32))
    data = png(p, transparency=0)
    img = read_image_upload(data)
    assert img.mode == "RGBA"
    assert img.getpixel((20, 5))[3] == 0 and img.getpixel((5, 5))[3] == 255


def test_rgb_colour_key_is_transparency() -> None:
    img = Image.new("RGB", (32, 32), (9, 9, 9))
    img.paste((1, 2, 3), (0, 0, 16, 32))
    out = read_image_upload(png(img, transparency=(1, 2, 3)))
    assert out.mode == "RGBA"
    assert out.getpixel((5, 5))[3] == 0 and out.getpixel((20, 5)) == (9, 9, 9, 255)


def test_what_is_stored_is_what_was_read() -> None:
    for img in (Image.new("RGB", (32, 32), (1, 2, 3)), Image.new("RGBA", (32, 32), (1, 2, 3, 0))):
        data = png(img)
        assert upload_to_store(data, read_image_upload(data)) is data  # kept byte for byte
    sixteen = png(Image.new("I;16", (32, 32), 30000))
    mask = Image.new("L", (32, 32), 255)
    mask.paste(0, (0, 0, 16, 16))
    keyed = png(Image.new("L", (32, 32), 7), transparency=7)
    for data, read in [
        (sixteen, read_image_upload(sixteen)),
        (png(mask), read_mask_upload(png(mask), (32, 32))),
        (keyed, read_image_upload(keyed)),
    ]:
        assert upload_to_store(data, read) != data
        stored = Image.open(io.BytesIO(upload_to_store(data, read)))
        assert stored.mode == read.mode and np.array_equal(np.asarray(stored), np.asarray(read))


def test_sixteen_bit_rgba() -> None:
    # 16-bit RGBA PNG written by hand (Pillow cannot write it)
    w = h = 16
    row = b"\x00" + b"".join(struct.pack(">HHHH", 65535, 0, 32768, 65535) for _ in range(w))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * h))
        + chunk(b"IEND", b"")
    )
    img = read_image_upload(data)
    assert img.mode == "RGBA" and img.getpixel((0, 0))[0] == 255


def _grey_png(values: np.ndarray, depth: int, key: int) -> bytes:
    """A greyscale PNG at `depth` bits (1, 2, 4 or 16) with colour key `key`, written by hand."""
    h, w = values.shape
    if depth == 16:
        rows = [values[y].astype(">u2").tobytes() for y in range(h)]
    else:
        per = 8 // depth
        padded = np.zeros((h, -(-w // per) * per), np.uint8)
        padded[:, :w] = values
        shifts = (np.arange(per)[::-1] * depth).astype(np.uint8)
        packed = (padded.reshape(h, -1, per) << shifts).sum(-1).astype(np.uint8)
        rows = [packed[y].tobytes() for y in range(h)]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"tRNS", struct.pack(">H", key))
        + chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in rows)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("depth", "key", "other"), [(1, 1, 0), (2, 3, 1), (4, 15, 6), (4, 0, 9), (16, 5, 40000)])
def test_a_colour_key_at_any_greyscale_depth_is_transparency(depth: int, key: int, other: int) -> None:
    """Pillow compared 16-bit keys with 8-bit pixels and never scaled 1-4 bit keys: the keyed area came out
    opaque (an edit refused: 'no alpha channel'), or another area transparent."""
    values = np.full((32, 32), other)
    values[:16] = key
    for read in (read_image_upload, lambda d: read_mask_upload(d, (32, 32))):
        img = read(_grey_png(values, depth, key))
        alpha = np.asarray(img)[..., 3]
        assert img.mode == "RGBA" and (alpha[:16] == 0).all() and (alpha[16:] == 255).all(), (depth, read)
    grey = np.asarray(read_image_upload(_grey_png(values, depth, key)))[16:, :, 0]
    assert abs(int(grey.mean()) - round(other * 255 / (2**depth - 1))) <= 1  # the opaque part's grey


def test_a_sixteen_bit_rgb_colour_key_is_refused_clearly() -> None:
    """Pillow keeps the high byte of 16-bit RGB and compared it with the key's low byte: the repaint area came
    out inverted, and the edit was charged."""
    a = np.full((32, 32, 3), 0x0202, ">u2")
    a[:16] = 0x0102
    idat = zlib.compress(b"".join(b"\x00" + a[y].tobytes() for y in range(32)))
    ihdr = struct.pack(">IIBBBBB", 32, 32, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tRNS", struct.pack(">HHH", *[0x0102] * 3))
    e = _err(data + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    assert e.code == "invalid_image_format" and "16-bit RGB" in e.message


# --- the rest is a clear 400, never a crash ----------------------------------------------------------------


def _err(data: bytes, **kw: object) -> UploadError:
    with pytest.raises(UploadError) as info:
        read_image_upload(data, **kw)  # type: ignore[arg-type]
    e = info.value
    assert e.message and e.param == "image" and e.code
    assert e.to_dict()["error"]["type"] == "invalid_request_error"
    return e


def test_empty() -> None:
    assert "empty" in _err(b"").message


def test_not_png_behind_png_name() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="JPEG")
    assert "JPEG" in _err(buf.getvalue()).message
    assert _err(b"hello, I am a text file pretending to be image.png").code == "invalid_image_format"
    assert "GIF" in _err(b"GIF89a" + b"\x00" * 100).message


def test_truncated() -> None:
    data = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    for cut in (20, 40, len(data) // 2, len(data) - 13):
        _err(data[:cut])


def test_corrupt_crc() -> None:
    data = bytearray(png(Image.new("RGB", (64, 64), (1, 2, 3))))
    data[40] ^= 0xFF  # inside IDAT
    _err(bytes(data))


def test_decompression_bomb_refused_before_decoding() -> None:
    # a header claiming 100000 x 100000 pixels: refused from the header alone
    e = _err(raw_png(100_000, 100_000, zlib.compress(b"\x00" * 1000)))
    assert e.code == "image_too_large"
    # a real bomb: 4000x4000 of zeros compresses to a few KB but is over the pixel limit when square-checked
    small = zlib.compress(b"\x00" * (4097 * 3 + 1) * 10)
    assert _err(raw_png(4097, 4097, small)).code == "image_too_large"


def test_text_chunk_bomb() -> None:
    bomb = chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"A" * 50_000_000))
    _err(raw_png(32, 32, zlib.compress((b"\x00" + b"\x00" * 96) * 32), extra=bomb))


def test_animated_png() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    assert probe_png(buf.getvalue())[4]
    assert "animated" in _err(buf.getvalue()).message


def test_degenerate_and_non_square() -> None:
    assert _err(png(Image.new("RGB", (1, 1)))).code == "invalid_image_size"
    assert _err(png(Image.new("RGB", (2000, 16)))).code == "invalid_image_shape"
    assert _err(png(Image.new("RGB", (64, 32)))).code == "invalid_image_shape"
    assert read_image_upload(png(Image.new("RGB", (64, 32))), require_square=False).size == (64, 32)


def test_byte_limit() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (1300, 1300, 3), dtype=np.uint8)
    data = png(Image.fromarray(noise), compress_level=0)
    assert len(data) > 4 * 1024 * 1024
    assert _err(data).code == "image_too_large"


# --- masks --------------------------------------------------------------------------------------------------


def test_mask() -> None:
    m = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    m.paste((0, 0, 0, 0), (0, 0, 32, 64))
    mask = read_mask_upload(png(m), size=(64, 64))
    assert mask.mode == "RGBA" and mask.getpixel((0, 0))[3] == 0
    with pytest.raises(UploadError) as info:
        read_mask_upload(png(m), size=(128, 128))
    assert info.value.param == "mask" and "same dimensions" in info.value.message
    grey = read_mask_upload(png(Image.new("L", (64, 64), 0)), size=(64, 64))
    assert grey.getpixel((1, 1))[3] == 0  # black greyscale = transparent = edit
    with pytest.raises(UploadError):
        read_mask_upload(png(Image.new("RGB", (64, 64))), size=(64, 64))  # no alpha: nothing to edit


def test_real_files(data_dir: Path) -> None:
    for f in (data_dir / "images").glob("*.png"):
        img = read_image_upload(f.read_bytes())
        assert img.mode in ("RGB", "RGBA")
