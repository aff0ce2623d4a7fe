"""Stages `decoder` and `inpaint`: UNets that turn a CLIP image embedding into movq latents."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unclip.models import builders
from unclip.training.data import ImageSet, to_unit
from unclip.training.masks import latent_keep_mask, random_masks

# Share of inpainting samples whose hidden pixels are white before encoding, as an edit of a transparent hole
# gives them to the model (the rest keep the real pixels under the mask, as an opaque image with a mask does):
# the autoencoder's attention and normalisation spread what is under the hole into every latent, so latents
# encoded from the whole image tell the model about pixels an edit never shows it.
WHITE_FILL = 0.75


@torch.no_grad()
def encode_all(movq, vision, images: ImageSet, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    lat, emb = [], []
    for i in range(0, len(images), batch):
        x = to_unit(images.images[i : i + batch])
        lat.append(movq.encode(x).latents.float())
        emb.append(vision(pixel_values=x).image_embeds.float())
    return torch.cat(lat), torch.cat(emb)


@torch.no_grad()
def zero_image_embed(vision) -> torch.Tensor:
    """What KandinskyV22PriorPipeline returns as the negative embedding: the embedding of an all-zero image."""
    size = vision.config.image_size
    return vision(pixel_values=torch.zeros(1, 3, size, size, device=vision.device)).image_embeds.float()


class DecoderStage:
    name = "decoder"

    def __init__(self, cfg: dict, images: ImageSet, movq, vision, out: Path, inpaint: bool = False) -> None:
        self.cfg, self.out, self.inpaint = cfg, out, inpaint
        self.name = "inpaint" if inpaint else "decoder"
        self.movq = movq.eval().requires_grad_(False)
        vision = vision.eval().requires_grad_(False)
        self.latents, self.emb = encode_all(self.movq, vision, images)
        self.pixels = images.images if inpaint else None
        self.zero = zero_image_embed(vision)
        self.noise = builders.NoiseSchedule(builders.decoder_scheduler().alphas_cumprod).to(
            self.latents.device
        )

    def model(self) -> torch.nn.Module:
        c = self.cfg["decoder"]
        ch, size = self.latents.shape[1], self.latents.shape[-1]
        unet = builders.decoder_unet(c, self.emb.shape[1], ch, size, inpaint=self.inpaint)
        start = self.cfg["inpaint" if self.inpaint else "decoder"].get("init_from")
        if start:  # continue a trained model's UNet (same architecture), e.g. the bundled model's
            from diffusers import UNet2DConditionModel

            folder = builders.model_part(start, self.name, "unet")
            unet.load_state_dict(
                UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).state_dict()
            )
        elif self.inpaint:  # start from the decoder: copy its weights, extra input channels start at zero
            from diffusers import UNet2DConditionModel

            base = UNet2DConditionModel.from_pretrained(
                self.out / "decoder" / "unet", torch_dtype=torch.float32
            ).state_dict()
            w = base["conv_in.weight"]
            base["conv_in.weight"] = torch.cat([w, torch.zeros(w.shape[0], ch + 1, *w.shape[2:])], 1)
            unet.load_state_dict(base)
        return unet

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        dev = self.latents.device
        n = batch_size
        idx = torch.randint(len(self.latents), (n,), generator=gen, device=gen.device).to(dev)
        x0, emb = self.latents[idx], self.emb[idx]
        drop = torch.rand(n, generator=gen, device=gen.device).to(dev) < self.cfg["decoder"]["cond_drop"]
        emb = torch.where(drop[:, None], self.zero, emb)
        t = torch.randint(0, 1000, (n,), generator=gen, device=gen.device).to(dev)
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(dev)
        xt = self.noise.add_noise(x0, noise, t)
        if self.inpaint:
            mask = random_masks(n, self.pixels.shape[-1], gen).to(dev)
            keep = latent_keep_mask(mask, x0.shape[-1])
            xt = torch.cat([xt, self.known_latents(idx, mask, gen) * keep, keep], 1)
        pred = model(xt, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": emb}).sample
        eps = pred[:, : x0.shape[1]].float()
        return F.mse_loss(eps, noise), {}

    @torch.no_grad()
    def known_latents(self, idx: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The latents an edit gives the inpainting UNet: for a WHITE_FILL share of the samples, the image
        with the area to repaint (`mask`, 1 = repaint) made white, encoded; for the rest, the whole image's."""
        known = self.latents[idx].clone()
        # a fixed number per batch: a batch size that changes every step makes oneDNN build new kernels each time
        white = torch.randperm(len(idx), generator=gen, device=gen.device)[: round(WHITE_FILL * len(idx))]
        if len(white):
            white = white.to(idx.device)
            x, m = to_unit(self.pixels[idx[white]]), mask[white]
            # under the stage's autocast (bf16 on AMX): a rounding far below the noise the UNet sees, for speed
            known[white] = self.movq.encode(x * (1 - m) + m).latents.float()
        return known

    def export(self, model) -> None:
        """The UNet, scheduler and pipeline index into the stage's folder. The autoencoder is the movq stage's:
        written here only where the model has none yet (the copy this stage read may be older than the one a
        movq stage beside it wrote since), and the inpainting pipeline shares the decoder's."""
        import shutil

        from diffusers import KandinskyV22InpaintPipeline, KandinskyV22Pipeline

        from unclip.training.export import save_parts

        cls = KandinskyV22InpaintPipeline if self.inpaint else KandinskyV22Pipeline
        folder = self.out / self.name
        pipe = cls(unet=model, scheduler=builders.decoder_scheduler(), movq=self.movq)
        # an autoencoder the folder has is the movq stage's and stays; the inpainting decoder's is a link to the
        # decoder's (below)
        save_parts(lambda tmp: pipe.save_pretrained(tmp, max_shard_size="15MB"), folder, keep=("movq",))
        if self.inpaint and not (folder / "movq").is_symlink():
            if (folder / "movq").exists():
                shutil.rmtree(folder / "movq")
            (folder / "movq").symlink_to(Path("..") / "decoder" / "movq", target_is_directory=True)
