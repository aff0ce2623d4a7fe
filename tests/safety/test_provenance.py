from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unclip.evaluation.watermark import jpeg, periodic_share, psnr
from unclip.safety.provenance import encode_png, has_signature, payload_for, verify


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Image.Image:
    return Image.open(data_dir / "images" / "cat_noface.png").convert("RGB")


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def _drawing(size: int = 256, seed: int = 0) -> Image.Image:
    """Emoji-like art, as the bundled model draws it: flat fills with dark outlines on a white background."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    s = size / 256
    fill = tuple(int(v) for v in rng.integers(60, 250, 3))
    d.ellipse([28 * s, 28 * s, 228 * s, 228 * s], fill=fill, outline=(40, 30, 30), width=round(6 * s))
    for x in (90, 166):
        d.ellipse([(x - 14) * s, 90 * s, (x + 14) * s, 130 * s], fill=(50, 35, 30))
    d.arc([70 * s, 120 * s, 186 * s, 200 * s], 20, 160, fill=(120, 40, 40), width=round(8 * s))
    return img


def test_signed_fields_copied_unchanged_onto_other_pixels_do_not_verify(photo: Image.Image) -> None:
    from PIL import PngImagePlugin

    genuine = _open(encode_png(photo.resize((256, 256)), {"seed": 1, "request_id": "x"}))
    assert verify(genuine).metadata_valid
    touched = genuine.copy()
    touched.putpixel((3, 3), (0, 0, 0))
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 420, 3), dtype=np.uint8))
    for other in (noise, touched):
        info = PngImagePlugin.PngInfo()
        for k, v in genuine.text.items():
            info.add_text(k, v)
        buf = io.BytesIO()
        other.save(buf, format="PNG", pnginfo=info)
        r = verify(buf.getvalue())
        assert not r.metadata_valid and r.to_dict()["metadata"] == {}
    assert not verify(buf.getvalue()).metadata_valid and verify(buf.getvalue()).from_unclip  # its watermark stays


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_round_trip(photo: Image.Image, size: int) -> None:
    meta = {"model": "unclip-emoji", "seed": 42, "request_id": f"req_{size}"}
    data = encode_png(photo.resize((size, size)), meta)
    r = verify(data)
    assert r.from_unclip and r.metadata_valid
    assert r.request_id_matches
    assert r.metadata["model"] == "unclip-emoji" and r.metadata["seed"] == "42"
    assert r.metadata["request_id"] == f"req_{size}" and r.metadata["created"].endswith("Z")
    # the watermark alone, with every text chunk gone
    stripped = verify(Image.fromarray(np.asarray(_open(data).convert("RGB"))))
    assert stripped.from_unclip and not stripped.metadata and stripped.watermark == r.watermark
    # a busy photo at 256 px may flip a bit of the request digest; drawings and larger images read exactly
    drawing = verify(encode_png(_drawing(size), meta))
    assert drawing.watermark == payload_for(f"req_{size}").hex() and drawing.request_id_matches
    if size >= 512:
        assert r.watermark == payload_for(f"req_{size}").hex()


def test_request_id_mismatch(photo: Image.Image) -> None:
    from PIL import PngImagePlugin

    data = encode_png(_drawing(256), {"request_id": "req_a"})
    img = _open(data)
    info = PngImagePlugin.PngInfo()
    for k, v in img.text.items():
        info.add_text(k, "req_b" if k == "unclip:request_id" else v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    r = verify(buf.getvalue())
    assert r.watermark and r.request_id_matches is False and not r.metadata_valid


@pytest.mark.parametrize(
    "colour", [(255, 255, 255), (0, 0, 0), (128, 128, 128), (250, 250, 250), (40, 90, 200), (255, 204, 77)]
)
def test_invisible_on_flat_colour(colour: tuple[int, int, int]) -> None:
    """No pixel moves more than 2/255, PSNR >= 42 dB, and no short period carries the mark (the old one was a
    grid of dots every 8 px)."""
    flat = Image.new("RGB", (256, 256), colour)
    marked = _open(encode_png(flat, {"request_id": "flat"})).convert("RGB")
    diff = np.asarray(marked).astype(float) - np.asarray(flat).astype(float)
    assert np.abs(diff).max() <= 2 and psnr(marked, flat) >= 42
    for c in range(3):
        assert periodic_share(diff[..., c]) < 0.25
    assert verify(marked).from_unclip or colour in ((0, 0, 0), (255, 255, 255))


def test_periodic_measure_catches_a_dot_grid() -> None:
    grid = np.zeros((256, 256))
    grid[::8, ::8] = 12.0
    assert periodic_share(grid) > 0.9


def test_invisible_on_photo_and_drawing(photo: Image.Image) -> None:
    for img in (photo.resize((512, 512)), _drawing(256), _drawing(1024, seed=3)):
        marked = _open(encode_png(img, {"seed": 1}))
        diff = np.abs(np.asarray(marked.convert("RGB")).astype(int) - np.asarray(img).astype(int))
        assert diff.max() <= 2 and psnr(marked, img) >= 42


def test_rgba_keeps_alpha(photo: Image.Image) -> None:
    img = photo.resize((256, 256)).convert("RGBA")
    img.putalpha(128)
    out = _open(encode_png(img, {"seed": 1}))
    assert out.mode == "RGBA" and out.getpixel((5, 5))[3] == 128
    assert verify(out).from_unclip


def test_unmarked_and_forged(photo: Image.Image) -> None:
    assert not verify(photo).from_unclip
    flat = Image.new("RGB", (512, 512), (250, 200, 40))
    assert not verify(flat).from_unclip
    # text chunks copied onto another image with a changed seed: signature check fails, no watermark
    from PIL import PngImagePlugin

    src = _open(encode_png(photo, {"seed": 1, "request_id": "x"}))
    info = PngImagePlugin.PngInfo()
    for k, v in src.text.items():
        info.add_text(k, "2" if k == "unclip:seed" else v)
    buf = io.BytesIO()
    photo.save(buf, format="PNG", pnginfo=info)
    r = verify(buf.getvalue())
    assert not r.metadata_valid and not r.from_unclip


def test_a_signature_field_that_is_not_ascii_is_a_bad_signature_not_an_unreadable_image() -> None:
    from PIL import PngImagePlugin

    marked = encode_png(_drawing(), {"seed": 1, "request_id": "x"})
    src = _open(marked)
    for forged in ("é" * 64, "0" * 64):
        info = PngImagePlugin.PngInfo()
        for k, v in src.text.items():
            info.add_itxt(k, forged if k == "unclip:signature" else v)
        buf = io.BytesIO()
        src.save(buf, format="PNG", pnginfo=info)  # the same pixels: the watermark still says where it is from
        r = verify(buf.getvalue())
        assert not r.metadata_valid and r.from_unclip, forged


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_survives_jpeg_halving_and_crops(size: int) -> None:
    for seed in range(3):
        request = f"req_{size}_{seed}"
        img = _open(encode_png(_drawing(size, seed), {"request_id": request})).convert("RGB")
        w = img.width
        copies = {
            "JPEG q75": jpeg(img, 75),
            "half size": img.resize((w // 2, w // 2), Image.Resampling.BICUBIC),
            "10% crop": img.crop((w // 20 + 3, w // 20 + 5, w - w // 20 + 3, w - w // 20 + 5)),
            "corner crop + JPEG q75": jpeg(img.crop((0, 0, w * 3 // 4, w * 3 // 4)), 75),
        }
        for name, copy in copies.items():
            r = verify(copy)
            assert r.from_unclip and r.watermark == payload_for(request).hex(), (name, r)


def test_photo_survives_jpeg_and_crop(photo: Image.Image) -> None:
    img = _open(encode_png(photo.resize((512, 512)), {"request_id": "abc"})).convert("RGB")
    assert verify(jpeg(img, 75)).from_unclip
    assert verify(img.crop((26, 26, 486, 486))).from_unclip  # 90 % centre crop
    assert verify(img.resize((256, 256), Image.Resampling.BICUBIC)).from_unclip


def test_no_false_matches(photo: Image.Image) -> None:
    unmarked = [_drawing(s, seed) for s in (256, 512) for seed in range(4)]
    unmarked += [photo, photo.resize((512, 512)), jpeg(photo, 75)]
    assert not any(verify(img).from_unclip for img in unmarked)


def test_visible_signature(photo: Image.Image) -> None:
    img = photo.resize((256, 256))
    signed = _open(encode_png(img, {"seed": 1}, signature=True))
    assert has_signature(signed) and verify(signed).signature
    assert not has_signature(img)


@pytest.mark.parametrize("size", [32, 128])
def test_small_images_get_metadata_only(size: int) -> None:
    img = Image.new("RGB", (size, size), (1, 2, 3))
    data = encode_png(img, {"seed": 1})
    assert np.array_equal(np.asarray(_open(data).convert("RGB")), np.asarray(img))
    r = verify(data)
    assert r.from_unclip and r.metadata_valid and r.watermark is None


def test_verify_refuses_bombs_and_junk() -> None:
    import struct
    import zlib

    from PIL import UnidentifiedImageError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ValueError):
        verify(bomb)
    with pytest.raises(UnidentifiedImageError):
        verify(b"definitely not an image")
