from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unclip.safety.provenance import encode_png, has_signature, payload_for, verify


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> Image.Image:
    return Image.open(data_dir / "images" / "cat_noface.png").convert("RGB")


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("size", [64, 128, 256, 512, 1024])
def test_round_trip(photo: Image.Image, size: int) -> None:
    meta = {"model": "unclip-emoji", "seed": 42, "request_id": f"req_{size}"}
    data = encode_png(photo.resize((size, size)), meta)
    r = verify(data)
    assert r.from_unclip and r.metadata_valid
    assert r.watermark == payload_for(f"req_{size}").hex()
    assert r.request_id_matches
    assert r.metadata["model"] == "unclip-emoji" and r.metadata["seed"] == "42"
    assert r.metadata["request_id"] == f"req_{size}" and r.metadata["created"].endswith("Z")
    # the watermark alone, with every text chunk gone
    stripped = verify(Image.fromarray(np.asarray(_open(data).convert("RGB"))))
    assert stripped.from_unclip and not stripped.metadata and stripped.watermark == r.watermark


def test_invisible(photo: Image.Image) -> None:
    img = photo.resize((512, 512))
    marked = np.asarray(_open(encode_png(img, {"seed": 1})).convert("RGB")).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((marked - np.asarray(img).astype(float)) ** 2))
    assert psnr > 33


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


def test_package_decoder_reads_our_mark(photo: Image.Image) -> None:
    cv2 = pytest.importorskip("cv2")
    from imwatermark import WatermarkDecoder

    data = encode_png(photo.resize((512, 512)), {"request_id": "abc"})
    bgr = cv2.cvtColor(np.asarray(_open(data).convert("RGB")), cv2.COLOR_RGB2BGR)
    assert WatermarkDecoder("bytes", 64).decode(bgr, "dwtDct") == payload_for("abc")


def test_survives_jpeg_and_crop(photo: Image.Image) -> None:
    data = encode_png(photo.resize((512, 512)), {"request_id": "abc"})
    img = _open(data).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    assert verify(buf.getvalue()).from_unclip
    assert verify(img.crop((26, 26, 486, 486))).from_unclip  # 90 % centre crop
    assert verify(img.resize((640, 640), Image.BICUBIC)).from_unclip


def test_visible_signature(photo: Image.Image) -> None:
    img = photo.resize((256, 256))
    signed = _open(encode_png(img, {"seed": 1}, signature=True))
    assert has_signature(signed) and verify(signed).signature
    assert not has_signature(img)


def test_tiny_images_get_metadata_only() -> None:
    data = encode_png(Image.new("RGB", (32, 32), (1, 2, 3)), {"seed": 1})
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
