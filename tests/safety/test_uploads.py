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


@pytest.mark.parametrize("turn", [1, 3, 6, 8])
def test_an_exif_orientation_is_read_as_browsers_show_it(turn: int) -> None:
    """The web editor paints its mask on the image as the browser shows it, `unclip edit` reads it so too."""
    from PIL import ImageOps

    stored = Image.new("RGB", (64, 48), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 32, 48))  # left half blue, as stored
    exif = Image.Exif()
    exif[0x0112] = turn
    data = png(stored, exif=exif)
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    img = read_image_upload(data, require_square=False)
    assert img.size == shown.size and np.array_equal(np.asarray(img), np.asarray(shown))
    kept = Image.open(io.BytesIO(upload_to_store(data, img)))
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(kept).convert("RGB")), np.asarray(shown))
    assert (upload_to_store(data, img) == data) == (turn == 1)  # stored upright: the engine reads pixels
    mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 48))
    m = read_mask_upload(png(mask, exif=exif), img.size)  # a mask turns with its image
    assert np.array_equal(np.asarray(m)[..., 3] == 0, np.asarray(shown)[..., 2] == 255)


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16"])
def test_a_png_whose_pixel_data_is_short_is_refused_and_whole_ones_are_not(mode: str, interlace: bool) -> None:
    from unclip.safety.uploads import pixel_data_short

    img = Image.new("RGB", (37, 29), (200, 10, 10)).convert(mode)
    data = _interlaced(img) if interlace else png(img)  # the flat image as Pillow writes it, and Adam7
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(img))
    width, height, depth, ctype, _ = probe_png(data)
    assert not pixel_data_short(data, width, height, depth, ctype), mode
    read_image_upload(data, require_square=False)


def _interlaced(img: Image.Image) -> bytes:
    """Pillow writes no Adam7 PNGs: the same pixels rewritten interlaced by hand (filter 0 on every line)."""
    from unclip.safety.uploads import _ADAM7, _CHANNELS

    data = png(img, bits=8) if img.mode == "P" else png(img)
    width, height, depth, ctype, _ = probe_png(data)
    bits = depth * _CHANNELS[ctype]
    raw = img.tobytes("raw", "I;16B") if img.mode == "I;16" else img.tobytes()  # PNG's byte and bit order
    row = -(-width * bits // 8)
    lines = [raw[i * row : (i + 1) * row] for i in range(height)]
    out = b""
    for x0, y0, dx, dy in _ADAM7:
        xs, ys = range(x0, width, dx), range(y0, height, dy)
        if not xs or not ys:
            continue
        for y in ys:
            bitsline = "".join(format(b, "08b") for b in lines[y])
            picked = "".join(bitsline[x * bits : (x + 1) * bits] for x in xs)
            picked += "0" * (-len(picked) % 8)
            out += b"\x00" + int(picked, 2).to_bytes(len(picked) // 8, "big") if picked else b"\x00"
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 1)
    extra = b"".join(chunk(name, body) for name, body in _chunks(data) if name in (b"PLTE", b"tRNS"))
    idat = chunk(b"IDAT", zlib.compress(out))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def test_a_png_with_only_some_of_its_rows_is_refused_not_padded_with_black() -> None:
    rows = b"".join(b"\x00" + bytes([200, 10, 10]) * 64 for _ in range(8))  # 8 of 64 rows, a clean stream
    data = raw_png(64, 64, zlib.compress(rows))
    with pytest.raises(UploadError, match="fewer pixels") as e:
        read_image_upload(data)
    assert e.value.code == "invalid_image"


def test_a_png_pillow_cannot_identify_is_named_without_python_objects() -> None:
    grey = Image.new("L", (64, 64), 128)
    data = png(grey)
    cut = data.index(b"IDAT") - 4
    bad = data[:cut] + chunk(b"tRNS", b"\x01") + data[cut:]  # a one-byte key: greyscale needs two
    with pytest.raises(UploadError) as e:
        read_image_upload(bad)
    assert e.value.code == "invalid_image" and "object at 0x" not in str(e.value)
