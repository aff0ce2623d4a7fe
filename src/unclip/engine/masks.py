"""What marks the area to repaint in an edit's image or mask (as in OpenAI's API: its transparent pixels).
Torch-free: the upload checks read it before any engine loads."""

from __future__ import annotations

from PIL import Image

REPAINT_ALPHA = 128  # pixels with alpha below this are repainted ("fully transparent", with some slack)


def has_area_to_edit(image: Image.Image) -> bool:
    """Whether an RGBA image (a mask, or an image without one) has a pixel the engine would repaint."""
    return image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < REPAINT_ALPHA
