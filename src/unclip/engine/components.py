"""Load a model folder: our bundled model or public Kandinsky 2.2 weights, through one code path.

Accepted layouts (subfolders are found by the first name that exists):
  prior/    or kandinsky-2-2-prior/            KandinskyV22PriorPipeline folder
  decoder/  or kandinsky-2-2-decoder/          KandinskyV22Pipeline folder
  inpaint/  or kandinsky-2-2-decoder-inpaint/  KandinskyV22InpaintPipeline folder (optional: edits, outpainting)
  upsampler-256/, upsampler-1024/              UNet2DModel 4× stages (optional; without them the decoder
                                               renders each size directly, as Kandinsky 2.2 does)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unclip.engine.errors import InvalidInput

ALIASES = {
    "prior": ("prior", "kandinsky-2-2-prior"),
    "decoder": ("decoder", "kandinsky-2-2-decoder"),
    "inpaint": ("inpaint", "kandinsky-2-2-decoder-inpaint"),
    "upsampler-256": ("upsampler-256",),
    "upsampler-1024": ("upsampler-1024",),
}


UPSCALE_INPUT = {256: 64, 1024: 256}  # each learned 4x stage (by output size): the longest side it takes


def upscale_limit(sizes: Iterable[int]) -> int:
    """The longest side a model with these upsampler stages upscales 4x (0: it has none)."""
    return max((UPSCALE_INPUT[s] for s in sizes if s in UPSCALE_INPUT), default=0)


def upsampler_sizes(root: Path) -> list[int]:
    """The upsampler stages a model folder has, by output size."""
    parts = find_parts(root)
    return [s for s in UPSCALE_INPUT if f"upsampler-{s}" in parts]


def find_parts(root: Path) -> dict[str, Path]:
    parts = {}
    for role, names in ALIASES.items():
        for name in names:
            if (root / name).is_dir():
                parts[role] = root / name
                break
    return parts


def is_model_folder(root: Path) -> bool:
    parts = find_parts(root)
    return "prior" in parts and "decoder" in parts


@dataclass
class Components:
    root: Path
    tokenizer: Any
    text_encoder: Any
    image_encoder: Any
    prior: Any
    prior_scheduler_config: dict
    unet: Any
    movq: Any
    decoder_scheduler_config: dict
    inpaint_unet: Any | None = None
    upsamplers: dict[int, Any] = field(default_factory=dict)  # output size → UNet2DModel
    # the CLIP image encoder's pixel normalisation (prior/image_processor): ours reads [-1, 1], as 0.5 / 0.5
    # says; public Kandinsky weights read OpenAI CLIP's means and deviations
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def clip_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (N×3×h×w) as the CLIP image encoder reads them."""
        if self.image_mean == self.image_std == (0.5, 0.5, 0.5):
            return x
        mean = torch.tensor(self.image_mean, device=x.device, dtype=x.dtype)[None, :, None, None]
        std = torch.tensor(self.image_std, device=x.device, dtype=x.dtype)[None, :, None, None]
        return ((x + 1) / 2 - mean) / std

    @property
    def image_size(self) -> int:
        """The size the CLIP image encoder reads."""
        return int(self.image_encoder.config.image_size)

    @property
    def movq_factor(self) -> int:
        return 2 ** (len(self.movq.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The decoder's training resolution in pixels."""
        return int(self.unet.config.sample_size) * self.movq_factor


def load_components(root: Path, device: torch.device, dtype: torch.dtype = torch.float32) -> Components:
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, VQModel
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    parts = find_parts(root)
    missing = [r for r in ("prior", "decoder") if r not in parts]
    if missing:
        raise InvalidInput(f"{root} is not a model folder: no {' or '.join(missing)} subfolder", param="model")

    def model(cls, folder: Path):
        return cls.from_pretrained(folder, torch_dtype=dtype).to(device).eval().requires_grad_(False)

    prior_dir, dec_dir = parts["prior"], parts["decoder"]
    inpaint_unet = None
    if "inpaint" in parts:
        inpaint_unet = model(UNet2DConditionModel, parts["inpaint"] / "unet")
    ups = {}
    for size in UPSCALE_INPUT:
        if f"upsampler-{size}" in parts:
            ups[size] = model(UNet2DModel, parts[f"upsampler-{size}"])
    norm = {}
    processor = prior_dir / "image_processor" / "preprocessor_config.json"
    if processor.is_file():
        config = json.loads(processor.read_text())
        norm = {k: tuple(float(v) for v in config[k]) for k in ("image_mean", "image_std") if k in config}
    return Components(
        root=root,
        tokenizer=CLIPTokenizer.from_pretrained(prior_dir / "tokenizer"),
        text_encoder=model(CLIPTextModelWithProjection, prior_dir / "text_encoder"),
        image_encoder=model(CLIPVisionModelWithProjection, prior_dir / "image_encoder"),
        prior=model(PriorTransformer, prior_dir / "prior"),
        prior_scheduler_config=json.loads((prior_dir / "scheduler" / "scheduler_config.json").read_text()),
        unet=model(UNet2DConditionModel, dec_dir / "unet"),
        movq=model(VQModel, dec_dir / "movq"),
        decoder_scheduler_config=json.loads((dec_dir / "scheduler" / "scheduler_config.json").read_text()),
        inpaint_unet=inpaint_unet,
        upsamplers=ups,
        **norm,
    )
