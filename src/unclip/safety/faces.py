"""Realistic human faces in uploaded photos, with the Haar cascades that ship inside the OpenCV wheel.

Edits and variations of photos of real people are refused. The product's own art is emoji-like (flat colours,
cartoon faces), so a face detector alone would refuse it too; a detection only counts when:

1. the frontal-face cascade finds a face (at least 6 % of the shorter side), confirmed by a second cascade
   (``alt2``) or by eyes inside the box;
2. the face box has a plausible share of skin-coloured pixels (YCrCb range; emoji yellow fails it);
3. the image looks like a photograph: many distinct colours and fine texture rather than flat fills.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from unclip.engine.images import flatten

__all__ = ["FaceReport", "analyse_faces", "contains_real_face"]

MIN_SIDE = 256  # the smallest size an upload is drawn at


@lru_cache(maxsize=1)
def _cascades() -> tuple[Any, Any, Any]:
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 moved the Haar cascades out of the main wheel
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no Haar cascades; install opencv-python-headless>=4.9,<5"
        )
    base = cv2.data.haarcascades
    face = cv2.CascadeClassifier(base + "haarcascade_frontalface_default.xml")
    alt = cv2.CascadeClassifier(base + "haarcascade_frontalface_alt2.xml")
    eyes = cv2.CascadeClassifier(base + "haarcascade_eye.xml")
    if face.empty() or alt.empty() or eyes.empty():  # pragma: no cover - broken OpenCV install
        raise RuntimeError("OpenCV's Haar cascades are missing from the opencv installation")
    return face, alt, eyes


class FaceReport(dict):  # a plain dict, easy to log: faces, photo_score, realistic
    pass


def _photo_score(rgb: np.ndarray) -> float:
    """0..1: how photographic the image looks (distinct colours and fine texture)."""
    small = rgb[:: max(1, rgb.shape[0] // 128), :: max(1, rgb.shape[1] // 128)]
    quant = (small // 8).reshape(-1, 3).astype(np.int32)
    distinct = len(np.unique(quant[:, 0] * 1024 + quant[:, 1] * 32 + quant[:, 2])) / max(1, len(quant))
    grey = rgb.astype(np.float32).mean(axis=2)
    # share of pixels with small non-zero gradients: photos have noise/texture everywhere, flat art has zeros
    gx = np.abs(np.diff(grey, axis=1))
    textured = float(((gx > 0.5) & (gx < 12)).mean())
    return float(min(1.0, 0.5 * min(1.0, distinct / 0.35) + 0.5 * min(1.0, textured / 0.45)))


def _skin_fraction(rgb: np.ndarray) -> float:
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128
    cb = (b - y) * 0.564 + 128
    skin = (cr > 133) & (cr < 180) & (cb > 77) & (cb < 135) & (y > 40)
    return float(skin.mean())


def analyse_faces(image: Image.Image) -> FaceReport:
    import cv2

    rgb_img = flatten(image)  # what the engine sees: transparency over white
    # detect on a bounded size (fast and consistent), and on small uploads at the smallest size the engine
    # draws (its minimum face is 24 px; a face smaller than that in the upload is enlarged by the engine)
    longest = max(rgb_img.size)
    scale = 512 / longest if longest > 512 else MIN_SIDE / longest if longest < MIN_SIDE else 1.0
    if scale != 1.0:
        rgb_img = rgb_img.resize(
            (max(1, round(rgb_img.width * scale)), max(1, round(rgb_img.height * scale))),
            Image.BILINEAR if scale < 1 else Image.BICUBIC,
        )
    rgb = np.asarray(rgb_img)
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    face_c, alt_c, eye_c = _cascades()
    min_side = max(24, int(0.06 * min(grey.shape)))
    found = face_c.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    is_grey = bool(
        np.abs(rgb[..., 0].astype(int) - rgb[..., 1]).mean() < 2
        and np.abs(rgb[..., 1].astype(int) - rgb[..., 2]).mean() < 2
    )
    photo = _photo_score(rgb)
    faces: list[dict[str, Any]] = []
    for x, y, w, h in found:
        roi = grey[y : y + h, x : x + w]
        alt = alt_c.detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3, minSize=(w // 2, h // 2))
        eyes = eye_c.detectMultiScale(
            roi[: h * 2 // 3], scaleFactor=1.1, minNeighbors=4, minSize=(w // 10, h // 10)
        )
        skin = 1.0 if is_grey else _skin_fraction(rgb[y : y + h, x : x + w])
        confirmed = len(alt) > 0 or len(eyes) >= 1
        faces.append(
            {
                "box": [int(x / scale), int(y / scale), int(w / scale), int(h / scale)],
                "confirmed": bool(confirmed),
                "skin": round(skin, 3),
                "eyes": len(eyes),
            }
        )
    realistic = any(f["confirmed"] and f["skin"] >= 0.25 for f in faces) and photo >= 0.45
    return FaceReport(faces=faces, photo_score=round(photo, 3), realistic=bool(realistic))


def contains_real_face(image: Image.Image) -> bool:
    """True when `image` looks like a photograph containing a realistic human face."""
    return bool(analyse_faces(image)["realistic"])
