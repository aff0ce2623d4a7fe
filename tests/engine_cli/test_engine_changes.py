"""The engine changes made for speed and for the CLI: the upsampling cascade, passive OpenMP waiting, and
edits without a light seam along the border of transparent areas."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    from unclip.cli.common import engine_for

    return engine_for(tiny_model, threads=1, quiet=True)


def test_upscale_cascade_same_per_image_and_batched(engine) -> None:
    from unclip.engine.engine import upscale_cascade

    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        one = upscale_cascade(engine.c.upsamplers, x, 512, chunk=1)
        whole = upscale_cascade(engine.c.upsamplers, x, 512, chunk=3)
        alone = upscale_cascade(engine.c.upsamplers, x[1:2], 512)
    assert one.shape == (3, 3, 512, 512) and one.is_contiguous()
    assert torch.allclose(one, whole, atol=2e-3)  # batched convolutions round differently (< 0.3 of a level)
    assert torch.equal(one[1:2], alone)  # an image's result does not depend on its batch


def test_upsamplers_are_channels_last(engine) -> None:
    for model in engine.c.upsamplers.values():
        w = model.conv_in.weight
        assert w.is_contiguous(memory_format=torch.channels_last)


def test_engine_import_sets_passive_openmp_waiting() -> None:
    code = "import os, unclip.engine; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"  # (setdefault: an explicit OMP_WAIT_POLICY would win)


def _grey_decoder(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder paints mid-grey everywhere, so the blend at the mask's border is visible exactly."""

    def decode(embeds, negative, seeds, size, *args, **kwargs):
        return torch.zeros(len(seeds), 3, size, size)

    monkeypatch.setattr(engine, "_decode", decode)


def test_edit_transparent_area_has_no_seam(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _grey_decoder(engine, monkeypatch)
    img = Image.new("RGBA", (256, 256), (200, 30, 30, 255))
    img.paste((0, 0, 0, 0), (64, 64, 192, 192))
    out = np.asarray(engine.edit(img, "cat", seed=1)[0]).astype(int)
    inside, outside = out[64:192, 64:192], out[:64]
    assert (inside[..., 1:] <= 129).all()  # no fade towards the white under the transparent pixels
    assert (np.abs(inside[56:72, 56:72] - 128) <= 2).all()  # the new content itself, away from the edge
    assert np.abs(inside[0, 64] - (200, 30, 30)).max() <= 20  # and at the edge it meets what is kept
    assert (outside == (200, 30, 30)).all()


def test_edit_with_mask_on_opaque_image_fades_in(engine, monkeypatch: pytest.MonkeyPatch) -> None:
    _grey_decoder(engine, monkeypatch)
    img = Image.new("RGB", (256, 256), (200, 30, 30))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 192))
    out = np.asarray(engine.edit(img, "cat", mask=mask, seed=1)[0]).astype(int)
    assert (np.abs(out[128, 128] - 128) <= 1).all()  # the middle is new
    assert out[64, 128, 0] > 140  # at the border, still partly the original red
    assert (out[:64] == (200, 30, 30)).all()
