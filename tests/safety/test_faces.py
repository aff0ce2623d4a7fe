from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "CascadeClassifier"):
    pytest.skip(
        "OpenCV without Haar cascades (5.x): install opencv-python-headless<5", allow_module_level=True
    )

from unclip.safety.uploads import contains_real_face  # noqa: E402


def emoji_face(size: int = 256, skin: tuple[int, int, int] = (255, 204, 0)) -> Image.Image:
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    s = size / 256
    d.ellipse([28 * s, 28 * s, 228 * s, 228 * s], fill=skin)
    d.ellipse([80 * s, 80 * s, 110 * s, 120 * s], fill="black")
    d.ellipse([146 * s, 80 * s, 176 * s, 120 * s], fill="black")
    d.arc([70 * s, 110 * s, 186 * s, 200 * s], 20, 160, fill="black", width=int(8 * s))
    return im


def test_photo_with_face(data_dir: Path) -> None:
    img = Image.open(data_dir / "images" / "astronaut_face.png")
    assert contains_real_face(img)
    assert contains_real_face(img.resize((1024, 1024)))


def test_photos_without_faces(data_dir: Path) -> None:
    for name in ("coffee_noface.png", "cat_noface.png"):
        assert not contains_real_face(Image.open(data_dir / "images" / name)), name


@pytest.mark.parametrize("skin", [(255, 204, 0), (241, 194, 150), (141, 85, 36)])
def test_emoji_faces_are_not_real(skin: tuple[int, int, int]) -> None:
    assert not contains_real_face(emoji_face(skin=skin))
    assert not contains_real_face(emoji_face(512, skin=skin).convert("RGBA"))


def test_noise_and_flat() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    assert not contains_real_face(noise)
    assert not contains_real_face(Image.new("RGB", (64, 64), (200, 150, 120)))


def test_a_face_is_judged_as_the_engine_sees_it(data_dir: Path) -> None:
    """The check read the raw RGB (a face carried in the alpha channel over black passed, one hidden under
    transparent pixels was refused) and never enlarged a small upload (a 64 px photo passed, then drawn at
    256 px)."""
    photo = Image.open(data_dir / "images" / "astronaut_face.png")
    grey = np.asarray(photo.convert("L"))
    in_alpha = np.zeros((*grey.shape, 4), np.uint8)
    in_alpha[..., 3] = 255 - grey  # over white, exactly the grey photo
    assert contains_real_face(Image.fromarray(in_alpha, "RGBA"))
    hidden = photo.convert("RGBA")
    hidden.putalpha(0)  # drawn as white
    assert not contains_real_face(hidden)
    for size in (64, 96):
        assert contains_real_face(photo.resize((size, size), Image.LANCZOS)), size


@pytest.mark.parametrize("size", [32, 64])
def test_small_emoji_faces_are_not_real(size: int) -> None:
    for skin in ((255, 204, 0), (241, 194, 150)):
        assert not contains_real_face(emoji_face(256, skin=skin).resize((size, size), Image.LANCZOS))
