"""A tiny random-weight model folder in the bundled layout, built from the same classes, for fast tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from unclip.models import builders
from unclip.models.tokenizer import train_tokenizer

_TEXTS = [
    "grinning face",
    "red apple, noto style",
    "cat face in the style of OpenMoji",
    "a rocket, flat Fluent icon",
    "Herz",
    "猫の顔",
    "pizza",
    "dog",
    "sun with face",
    "monochrome high-contrast star",
    "bomb",
    "flag: France",
]


def tiny_config() -> dict:
    from unclip import REPO_ROOT

    return json.loads((REPO_ROOT / "configs" / "tiny.json").read_text())


def make_tiny_model(root: Path, seed: int = 0, upsamplers: bool = True, inpaint: bool = True) -> Path:
    """Write prior/, decoder/, inpaint/ and upsampler-*/ folders with random weights under `root`."""
    from diffusers import KandinskyV22InpaintPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

    torch.manual_seed(seed)
    cfg = tiny_config()
    root.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(_TEXTS * 4, 300, cfg["tokenizer"]["max_length"], root / "prior" / "tokenizer")
    c = cfg["clip"]
    text = builders.text_encoder(
        c, len(tok), tok.model_max_length, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id
    )
    vision = builders.image_encoder(c)
    prior = builders.prior(cfg["prior"], c["projection_dim"], tok.model_max_length)
    KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=vision,
        text_encoder=text,
        tokenizer=tok,
        scheduler=builders.prior_scheduler(),
        image_processor=builders.image_processor(c["image_size"]),
    ).save_pretrained(root / "prior")
    movq = builders.movq(cfg["movq"])
    latent = cfg["data"]["image_size"] // 2 ** (len(cfg["movq"]["block_out_channels"]) - 1)
    unet = builders.decoder_unet(cfg["decoder"], c["projection_dim"], cfg["movq"]["latent_channels"], latent)
    KandinskyV22Pipeline(unet=unet, scheduler=builders.decoder_scheduler(), movq=movq).save_pretrained(
        root / "decoder"
    )
    if inpaint:
        unet9 = builders.decoder_unet(
            cfg["decoder"], c["projection_dim"], cfg["movq"]["latent_channels"], latent, inpaint=True
        )
        KandinskyV22InpaintPipeline(
            unet=unet9, scheduler=builders.decoder_scheduler(), movq=movq
        ).save_pretrained(root / "inpaint")
    if upsamplers:
        builders.upsampler(cfg["upsampler_256"]).save_pretrained(root / "upsampler-256")
        builders.upsampler(cfg["upsampler_1024"]).save_pretrained(root / "upsampler-1024")
    return root
