"""Stage `prior`: a PriorTransformer that maps CLIP text features to a CLIP image embedding (x0 prediction)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unclip.models import builders
from unclip.training.data import CaptionSet, ImageSet, to_unit


@torch.no_grad()
def image_embeddings(vision, images: ImageSet, batch: int = 512) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch):
        out.append(vision(pixel_values=to_unit(images.images[i : i + batch])).image_embeds.float())
    return torch.cat(out)


class PriorStage:
    name = "prior"

    def __init__(
        self, cfg: dict, images: ImageSet, captions: CaptionSet, tokenizer, text, vision, out: Path
    ) -> None:
        self.cfg, self.captions, self.tokenizer, self.out = cfg, captions, tokenizer, out
        self.text, self.vision = text.eval().requires_grad_(False), vision.eval().requires_grad_(False)
        self.emb = image_embeddings(self.vision, images)
        self.mean, self.std = self.emb.mean(0, keepdim=True), self.emb.std(0, keepdim=True) + 1e-6
        self.target = (self.emb - self.mean) / self.std
        self.noise = builders.NoiseSchedule(builders.prior_scheduler().alphas_cumprod).to(self.emb.device)

    def model(self) -> torch.nn.Module:
        start = self.cfg["prior"].get("init_from")
        if start:  # continue a trained model's prior (its architecture comes with it)
            from diffusers import PriorTransformer

            p = PriorTransformer.from_pretrained(
                builders.model_part(start, "prior", "prior"), torch_dtype=torch.float32
            )
        else:
            p = builders.prior(
                self.cfg["prior"], self.text.config.projection_dim, self.tokenizer.model_max_length
            )
        with torch.no_grad():
            p.clip_mean.copy_(self.mean.cpu())
            p.clip_std.copy_(self.std.cpu())
        return p

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        dev = self.emb.device
        idx = torch.randint(len(self.emb), (batch_size,), generator=gen, device=gen.device).to(dev)
        cap = self.captions.sample(idx, gen)
        ids, mask = self.captions.ids[cap].long(), self.captions.mask[cap]
        drop = (
            torch.rand(batch_size, generator=gen, device=gen.device).to(dev) < self.cfg["prior"]["cond_drop"]
        )
        ids = torch.where(drop[:, None], self.captions.empty_ids.long(), ids)
        mask = torch.where(drop[:, None], self.captions.empty_mask, mask)
        with torch.no_grad():
            enc = self.text(input_ids=ids)
        x0 = self.target[idx]
        t = torch.randint(0, 1000, (batch_size,), generator=gen, device=gen.device).to(dev)
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(dev)
        xt = self.noise.add_noise(x0, noise, t)
        pred = model(
            xt,
            timestep=t,
            proj_embedding=enc.text_embeds,
            encoder_hidden_states=enc.last_hidden_state,
            attention_mask=mask,
        ).predicted_image_embedding
        loss = F.mse_loss(pred.float(), x0)
        cos = F.cosine_similarity(pred.float() * self.std + self.mean, self.emb[idx]).mean()
        return loss, {"cos": cos}

    def export(self, model) -> None:
        """The prior, its scheduler and the pipeline index; the towers and tokenizer it read are the run's own
        (the clip stage's) and stay as they are."""
        from diffusers import KandinskyV22PriorPipeline

        from unclip.training.export import save_parts

        pipe = KandinskyV22PriorPipeline(
            prior=model,
            image_encoder=self.vision,
            text_encoder=self.text,
            tokenizer=self.tokenizer,
            scheduler=builders.prior_scheduler(),
            image_processor=builders.image_processor(self.vision.config.image_size),
        )
        save_parts(
            lambda tmp: pipe.save_pretrained(tmp, max_shard_size="15MB"),
            self.out / "prior",
            keep=("text_encoder", "image_encoder", "tokenizer"),
        )
