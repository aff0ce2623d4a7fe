"""What the inpainting stage shows its UNet must match what an edit shows it at inference."""

from __future__ import annotations

from pathlib import Path

import torch

from unclip.models import builders
from unclip.training import decoder as stage
from unclip.training.data import ImageSet
from unclip.training.masks import latent_keep_mask
from unclip.training.run import load_config


def _stage(images: torch.Tensor) -> stage.DecoderStage:
    cfg = load_config("tiny")
    torch.manual_seed(0)
    movq, vision = builders.movq(cfg["movq"]), builders.image_encoder(cfg["clip"])
    n = len(images)
    data = ImageSet(images, torch.full((n, 1, 64, 64), 255, dtype=torch.uint8), [{} for _ in range(n)],
                    torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))  # fmt: skip
    return stage.DecoderStage(cfg, data, movq, vision, Path("unused"), inpaint=True)


def test_hidden_pixels_do_not_reach_the_known_latents(monkeypatch) -> None:
    """An edit of a transparent hole gives the model white where the hole is; training must too, not latents
    of the whole image (the autoencoder's attention spreads the hidden pixels into every latent)."""
    monkeypatch.setattr(stage, "WHITE_FILL", 1.0)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=gen)
    b = a.clone()
    b[..., 32:, :] = 255 - b[..., 32:, :]  # differ only in the bottom half
    s = _stage(torch.cat([a, b]))
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 32:, :] = 1
    keep = latent_keep_mask(mask, s.latents.shape[-1])
    known = s.known_latents(torch.tensor([0, 1]), mask, gen)
    assert torch.allclose(known[0] * keep[0], known[1] * keep[1], atol=1e-5)
    # encoding the whole image lets the hidden half change the kept latents
    assert not torch.allclose(s.latents[0] * keep[0], s.latents[1] * keep[1], atol=1e-3)


def test_without_white_fill_the_real_pixels_under_the_mask_are_encoded(monkeypatch) -> None:
    monkeypatch.setattr(stage, "WHITE_FILL", 0.0)
    gen = torch.Generator().manual_seed(1)
    s = _stage(torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8, generator=gen))
    mask = torch.ones(2, 1, 64, 64)
    assert torch.equal(s.known_latents(torch.tensor([2, 0]), mask, gen), s.latents[[2, 0]])


def test_a_latent_pixel_touching_the_area_to_repaint_is_repainted() -> None:
    """As the engine decides (any coverage, then one latent pixel more), not by nearest sampling."""
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 30, 30] = 1  # one pixel of the 4×4 block of latent pixel (7, 7)
    keep = latent_keep_mask(mask, 16)[0, 0]
    assert keep[6:9, 6:9].sum() == 0 and keep.sum() == 16 * 16 - 9
