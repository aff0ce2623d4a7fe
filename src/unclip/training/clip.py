"""Stage `clip`: a CLIP text encoder and vision encoder trained contrastively on emoji and their captions."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from unclip.models import builders
from unclip.training.data import CaptionSet, ImageSet, augment, to_unit

LOGIT_SCALE = 2.659  # log(1/0.07), as in CLIP


class ClipModel(torch.nn.Module):
    def __init__(self, text: torch.nn.Module, vision: torch.nn.Module, logit_scale: float = LOGIT_SCALE) -> None:
        super().__init__()
        self.text, self.vision = text, vision
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(logit_scale)))


def clip_targets(
    images: ImageSet, captions: CaptionSet, idx: torch.Tensor, cap: torch.Tensor
) -> torch.Tensor:
    """Caption i matches image j when they show the same emoji and the caption names no other style: the
    batch holds the same emoji in several styles, and 'grinning face' fits all of them."""
    same_emoji = images.base_ids[idx][:, None] == images.base_ids[idx][None, :]
    same_style = images.style_ids[idx][:, None] == images.style_ids[idx][None, :]
    named = captions.names_style[cap][:, None]
    t = (same_emoji & (same_style | ~named)).float()
    return t / t.sum(1, keepdim=True)


def emoji_groups(base_ids: torch.Tensor, batch_size: int, group: int, gen: torch.Generator) -> torch.Tensor:
    """A batch of batch_size // group random images, each followed by group - 1 other images of the same emoji
    (its other styles, where it has them). Random batches almost never hold one emoji in two styles, so
    nothing teaches the text tower to tell "X in A" from "X in B"; these do, which is what an unseen pairing
    of a known emoji with a known style needs."""
    order = torch.argsort(base_ids, stable=True)
    count = torch.bincount(base_ids)
    start = count.cumsum(0) - count
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - start[base_ids[order]]
    n = -(-batch_size // group)
    anchor = torch.randint(len(base_ids), (n,), generator=gen, device=gen.device).to(base_ids.device)
    b = base_ids[anchor]
    others = (count[b] - 1).clamp(min=1)[:, None]
    r = (torch.rand(n, group - 1, generator=gen, device=gen.device).to(base_ids.device) * others).long()
    r = torch.where(count[b][:, None] > 1, r + (r >= rank[anchor][:, None]).long(), 0)
    partners = order[start[b][:, None] + r]
    return torch.cat([anchor[:, None], partners], 1).flatten()[:batch_size]


def global_batch(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Under several processes, every process's rows (features keep their gradients): a contrastive loss is
    not a mean over rows, so each process computes the global batch's, as one process would. The gathers'
    backward sums each row's gradient over the processes, and DDP then averages: the full batch's gradient."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(tensors)
    from torch.distributed.nn.functional import all_gather

    out = []
    for t in tensors:
        if t.requires_grad:
            out.append(torch.cat(all_gather(t.contiguous())))
        else:
            parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, t.contiguous())
            out.append(torch.cat(parts))
    return out


class ClipStage:
    name = "clip"

    def __init__(self, cfg: dict, images: ImageSet, captions: CaptionSet, tokenizer, out: Path) -> None:
        self.cfg, self.images, self.captions, self.tokenizer, self.out = cfg, images, captions, tokenizer, out

    def model(self) -> torch.nn.Module:
        c, tok = self.cfg["clip"], self.tokenizer
        if c.get(
            "init_from"
        ):  # continue a trained model's towers (and its tokenizer, in the run's model folder)
            from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

            f32 = {"torch_dtype": torch.float32}
            text = CLIPTextModelWithProjection.from_pretrained(
                builders.model_part(c["init_from"], "prior", "text_encoder"), **f32
            )
            vision = CLIPVisionModelWithProjection.from_pretrained(
                builders.model_part(c["init_from"], "prior", "image_encoder"), **f32
            )
        else:
            text = builders.text_encoder(
                c, len(tok), tok.model_max_length, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id
            )
            vision = builders.image_encoder(c)
        # a warm start goes on at the temperature the towers were trained with (the text tower's config keeps
        # it; folders exported before it did start at CLIP's)
        if c.get("freeze_vision"):
            from transformers import CLIPVisionModelWithProjection

            vision = CLIPVisionModelWithProjection.from_pretrained(self._frozen_tower(), torch_dtype=torch.float32)
        model = ClipModel(text, vision, getattr(text.config, "logit_scale", LOGIT_SCALE))
        if c.get("freeze_vision"):
            # locked-image tuning: the decoder is conditioned on this tower's embeddings, so only the text side
            # moves towards it
            model.vision.requires_grad_(False).eval()
            self.frozen: torch.Tensor | None = None  # at the first step: after a resume restored the towers
        return model

    def _frozen_tower(self) -> Path:
        """The image tower a locked-image run keeps: the run's own (a resumed run has no `init_from`, and a
        tower built from the config would be a random one), or the model it starts from."""
        own = self.out / "prior" / "image_encoder"
        if (own / "config.json").is_file():
            return own
        if self.cfg["clip"].get("init_from"):
            return builders.model_part(self.cfg["clip"]["init_from"], "prior", "image_encoder")
        raise ValueError(
            "clip.freeze_vision keeps the image tower the decoder is conditioned on, and this run has none: "
            "start it from a trained model (--init-from models/unclip-emoji)"
        )

    @torch.no_grad()
    def _embed_frozen(self, vision: torch.nn.Module) -> torch.Tensor:
        """Every image's embedding by the frozen tower, unaugmented, as the decoder sees them."""
        x = to_unit(self.images.images)
        return torch.cat(
            [vision.to(x.device)(pixel_values=x[i : i + 512]).image_embeds.float() for i in range(0, len(x), 512)]
        )

    def loss(self, model, step: int, gen: torch.Generator, batch_size: int):
        group = self.cfg["clip"].get("group", 1)
        if group > 1:
            idx = emoji_groups(self.images.base_ids, batch_size, group, gen)
        else:
            idx = torch.randint(len(self.images), (batch_size,), generator=gen, device=gen.device).to(
                self.images.images.device
            )
        cap = self.captions.sample(idx, gen)
        txt = F.normalize(model.text(input_ids=self.captions.ids[cap].long()).text_embeds.float(), dim=-1)
        if self.cfg["clip"].get("freeze_vision"):
            if self.frozen is None:
                self.frozen = self._embed_frozen(model.vision)
            img = F.normalize(self.frozen[idx], dim=-1)
        else:
            pixels = augment(to_unit(self.images.images[idx]), gen)
            img = F.normalize(model.vision(pixel_values=pixels).image_embeds.float(), dim=-1)
        txt, img, idx, cap = global_batch(txt, img, idx, cap)
        scale = model.logit_scale.clamp(max=4.6052).exp()
        logits = scale * txt @ img.T
        t_txt = clip_targets(self.images, self.captions, idx, cap)
        loss = 0.5 * (
            -(t_txt * logits.log_softmax(1)).sum(1).mean()
            + -(t_txt.T / t_txt.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
        )
        acc = (t_txt.gather(1, logits.argmax(1, keepdim=True)) > 0).float().mean()
        return loss, {"acc": acc, "scale": scale}

    def export(self, model) -> None:
        prior = self.out / "prior"
        model.text.config.logit_scale = float(model.logit_scale.detach())
        model.text.save_pretrained(prior / "text_encoder")
        model.vision.save_pretrained(prior / "image_encoder")
        builders.image_processor(self.cfg["clip"]["image_size"]).save_pretrained(prior / "image_processor")
