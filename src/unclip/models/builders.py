"""Build every unCLIP component from a config section, with the classes of transformers and diffusers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def model_part(model_dir: str | Path, *part: str) -> Path:
    """A part of a model folder (`decoder/movq`, `decoder/unet`, …); a relative folder is taken from the
    repository root when it is not found from the working directory (`models/unclip-emoji`)."""
    from unclip import REPO_ROOT

    root = Path(model_dir)
    if not root.is_absolute() and not root.exists():
        root = REPO_ROOT / root
    folder = root.joinpath(*part)
    if not folder.is_dir():
        raise FileNotFoundError(f"no {'/'.join(part)} in {root} to start from")
    return folder


def text_encoder(
    cfg: dict[str, Any], vocab_size: int, max_length: int, eos_id: int, pad_id: int, bos_id: int
):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["layers"],
            num_attention_heads=cfg["heads"],
            max_position_embeddings=max_length,
            projection_dim=cfg["projection_dim"],
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            bos_token_id=bos_id,
        )
    )


def image_encoder(cfg: dict[str, Any]):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["vision_layers"],
            num_attention_heads=cfg["heads"],
            image_size=cfg["image_size"],
            patch_size=cfg["patch_size"],
            projection_dim=cfg["projection_dim"],
        )
    )


def image_processor(image_size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def prior(cfg: dict[str, Any], embedding_dim: int, max_length: int):
    from diffusers import PriorTransformer

    return PriorTransformer(
        num_attention_heads=cfg["heads"],
        attention_head_dim=cfg["head_dim"],
        num_layers=cfg["layers"],
        embedding_dim=embedding_dim,
        num_embeddings=max_length,
        additional_embeddings=4,
        dropout=0.0,
        time_embed_act_fn="gelu",
        clip_embed_dim=embedding_dim,
    )


def prior_scheduler():
    from diffusers import UnCLIPScheduler

    return UnCLIPScheduler(
        num_train_timesteps=1000,
        variance_type="fixed_small_log",
        prediction_type="sample",
        clip_sample=True,
        clip_sample_range=10.0,
    )


def movq(cfg: dict[str, Any]):
    from diffusers import VQModel

    n = len(cfg["block_out_channels"])
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        latent_channels=cfg["latent_channels"],
        num_vq_embeddings=cfg["num_vq_embeddings"],
        vq_embed_dim=cfg["latent_channels"],
        norm_num_groups=min(32, cfg["block_out_channels"][0]),
        sample_size=64,
    )


def decoder_unet(
    cfg: dict[str, Any], embedding_dim: int, latent_channels: int, sample_size: int, inpaint: bool = False
):
    """UNet2DConditionModel in the Kandinsky 2.2 configuration: the CLIP image embedding enters both as
    cross-attention tokens (image_proj) and added to the time embedding (addition_embed_type="image")."""
    from diffusers import UNet2DConditionModel

    chans = tuple(cfg["block_out_channels"])
    n = len(chans)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels * 2 + 1 if inpaint else latent_channels,
        out_channels=latent_channels
        * 2,  # Kandinsky's layout predicts noise and variance; we train the noise half
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("SimpleCrossAttnUpBlock2D",) * (n - 1) + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=chans,
        layers_per_block=cfg["layers_per_block"],
        cross_attention_dim=cfg["cross_attention_dim"],
        attention_head_dim=cfg["attention_head_dim"],
        encoder_hid_dim=embedding_dim,
        encoder_hid_dim_type="image_proj",
        addition_embed_type="image",
        addition_embed_type_num_heads=cfg["attention_head_dim"],
        resnet_time_scale_shift="scale_shift",
        norm_num_groups=min(32, chans[0]),
        act_fn="silu",
    )


def decoder_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        prediction_type="epsilon",
        variance_type="fixed_small",
        thresholding=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def upsampler(cfg: dict[str, Any]):
    """A learned 4× super-resolution stage: a UNet2DModel refining a bicubic 4× enlargement (residual output).

    With `space_to_depth: f` the UNet sees the enlargement folded into f×f blocks (3·f² channels at 1/f of the
    resolution) and unfolds its output the same way: the same receptive field at 1/f² of the positions, which
    on a CPU is what the memory-bound norms and activations of a full-resolution UNet cost."""
    from diffusers import UNet2DModel

    chans = tuple(cfg["block_out_channels"])
    n = len(chans)
    f = int(cfg.get("space_to_depth", 1))
    return UNet2DModel(
        sample_size=cfg["low_size"] * cfg["scale"] // f,
        in_channels=3 * f * f,
        out_channels=3 * f * f,
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        block_out_channels=chans,
        layers_per_block=cfg["layers_per_block"],
        norm_num_groups=min(16, chans[0]),
        add_attention=False,
    )


class NoiseSchedule:
    """The forward (noising) process of a diffusers scheduler, as tensors on the training device."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod.float()

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(self.alphas_cumprod.to(device))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
