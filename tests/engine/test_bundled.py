"""The bundled model, for real (slow): it loads through the diffusers Kandinsky 2.2 classes and its
generations are recognisable to its own CLIP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unclip import BUNDLED_MODEL_DIR
from unclip.engine import Engine

pytestmark = pytest.mark.slow

PROMPTS = [
    "grinning face, twemoji style",
    "red apple, noto style",
    "cat face, openmoji style",
    "rocket, flat Fluent icon",
    "dog face, monochrome high-contrast",
    "red heart, twemoji style",
    "sun, noto style",
    "pizza, emojione style",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load()


def test_bundled_model_budget() -> None:
    files = [p for p in BUNDLED_MODEL_DIR.rglob("*") if p.is_file() and not p.is_symlink()]
    sizes = [p.stat().st_size for p in files]
    assert max(sizes) <= 16 * 2**20
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") < 64 * 2**20
    assert (BUNDLED_MODEL_DIR / "README.md").exists()


def test_loads_through_diffusers_classes() -> None:
    from diffusers import (
        KandinskyV22InpaintPipeline,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
        UNet2DModel,
    )

    prior = KandinskyV22PriorPipeline.from_pretrained(BUNDLED_MODEL_DIR / "prior", torch_dtype=torch.float32)
    out = prior("a red apple, noto style", num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    decoder = KandinskyV22Pipeline.from_pretrained(BUNDLED_MODEL_DIR / "decoder", torch_dtype=torch.float32)
    img = decoder(
        image_embeds=out.image_embeds,
        negative_image_embeds=out.negative_image_embeds,
        height=64,
        width=64,
        num_inference_steps=10,
        output_type="np",
    ).images
    assert img.shape == (1, 64, 64, 3) and img.std() > 0.05
    assert (
        KandinskyV22InpaintPipeline.from_pretrained(BUNDLED_MODEL_DIR / "inpaint").unet.config.in_channels
        == 9
    )
    assert UNet2DModel.from_pretrained(BUNDLED_MODEL_DIR / "upsampler-1024").config.out_channels == 3


def test_generations_match_their_prompts(engine: Engine) -> None:
    images = [engine.generate(p, size=256, seed=i)[0] for i, p in enumerate(PROMPTS)]
    assert all(im.size == (256, 256) for im in images)
    with torch.inference_mode():
        img = F.normalize(engine._image_embeds(images).float(), dim=-1)
        txt = F.normalize(engine._text(PROMPTS).embeds.float(), dim=-1)
    hits = (img @ txt.T).argmax(1) == torch.arange(len(PROMPTS))
    # our CLIP should name most of the generated images correctly among the 8 prompts (chance: 1 in 8)
    assert hits.float().mean() >= 0.5, hits
