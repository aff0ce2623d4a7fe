"""Stage `movq`: the VQ autoencoder (diffusers VQModel) in the Kandinsky 2.2 "movq" role."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unclip.models import builders
from unclip.training.data import ImageSet, augment, to_unit


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    def grad(x):
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    (ay, ax), (by, bx) = grad(a), grad(b)
    return F.l1_loss(ay, by) + F.l1_loss(ax, bx)


class MovqStage:
    name = "movq"

    def __init__(self, cfg: dict, images: ImageSet, out: Path) -> None:
        self.cfg, self.images, self.out = cfg, images, out

    def model(self) -> torch.nn.Module:
        c = self.cfg["movq"]
        if c.get("init_from"):  # continue a trained model's autoencoder (e.g. the bundled model's)
            from diffusers import VQModel

            folder = builders.model_part(c["init_from"], "decoder", "movq")
            model = VQModel.from_pretrained(folder, torch_dtype=torch.float32)
        else:
            model = builders.movq(c)
        if c.get("freeze_encoder"):
            # Only the pixel decoder learns: the latent space, and with it every diffusion decoder trained on
            # it, stays valid, so a better decoder ships on its own.
            for part in (model.encoder, model.quant_conv, model.quantize):
                part.requires_grad_(False)
        return model

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        idx = torch.randint(len(self.images), (batch_size,), generator=gen, device=gen.device).to(
            self.images.images.device
        )
        x = augment(to_unit(self.images.images[idx]), gen, max_shift=0.04, scale=(0.95, 1.05))
        c = self.cfg["movq"]
        h = model.encode(x).latents
        # The pipelines decode unquantised latents (force_not_quantize=True): that path is what counts.
        rec_h = model.decode(h, force_not_quantize=True).sample.float()
        loss = F.l1_loss(rec_h, x) + 0.5 * gradient_l1(rec_h, x)
        colour = c.get("colour_weight", 0.0)
        if colour:  # flat regions' colour: L1 of the 4x4 means, where a colour shift cannot hide in edges
            loss = loss + colour * F.l1_loss(F.avg_pool2d(rec_h, 4), F.avg_pool2d(x, 4))
        if c.get("train_quantized", True):
            quantized = model.decode(h)
            rec_q = quantized.sample.float()
            loss = (
                loss
                + F.l1_loss(rec_q, x)
                + 0.5 * gradient_l1(rec_q, x)
                + quantized.commit_loss.float().mean()
            )
        psnr = 10 * torch.log10(4.0 / F.mse_loss(rec_h.clamp(-1, 1), x).clamp_min(1e-8))
        return loss, {"psnr": psnr}

    @torch.no_grad()
    def export(self, model) -> None:
        if self.cfg["movq"].get("freeze_encoder"):  # the latent space is the one it started from
            model.save_pretrained(self.out / "decoder" / "movq", max_shard_size="15MB")
            return
        # Rescale the latent space to unit standard deviation, since the Kandinsky pipelines apply no scaling
        # factor: scale quant_conv and the codebook by c and undo it in post_quant_conv. Decoding is unchanged.
        sample = to_unit(self.images.images[:512].to(model.device))
        c = 1.0 / model.encode(sample).latents.float().std().item()
        model.quant_conv.weight.mul_(c)
        model.quant_conv.bias.mul_(c)
        model.quantize.embedding.weight.mul_(c)
        model.post_quant_conv.weight.div_(c)
        model.save_pretrained(self.out / "decoder" / "movq", max_shard_size="15MB")
