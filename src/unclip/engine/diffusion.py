"""Sampling loops for the prior and the decoder, with batched classifier-free guidance.

They do what KandinskyV22PriorPipeline, KandinskyV22Pipeline and KandinskyV22InpaintPipeline do, with
any diffusers scheduler (few-step solvers by default), per-image seeds, step callbacks and cancellation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unclip.engine.errors import Cancelled

StepHook = Callable[[], None]


def noise_for(seeds: list[int], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """One noise tensor per seed, so image i of a batch equals the single image made with seed i."""
    out = []
    for s in seeds:
        g = torch.Generator("cpu").manual_seed(int(s))
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out).to(device)


def step_generators(scheduler, seeds: list[int]) -> dict[str, list[torch.Generator]]:
    """`scheduler.step`'s generators, one per image from its seed, for samplers that add noise at each step
    (ddpm): without them the noise came from torch's global state, and a seed did not reproduce its image."""
    if "generator" not in inspect.signature(scheduler.step).parameters:
        return {}
    return {"generator": [torch.Generator("cpu").manual_seed((int(s) * 31 + 1) & 0x7FFFFFFFFFFFFFFF) for s in seeds]}


@dataclass
class TextFeatures:
    embeds: torch.Tensor  # [B, D]
    hidden: torch.Tensor  # [B, L, D]
    mask: torch.Tensor  # [B, L]

    def repeat(self, n: int) -> TextFeatures:
        return TextFeatures(self.embeds.repeat_interleave(n, 0), self.hidden.repeat_interleave(n, 0),
                            self.mask.repeat_interleave(n, 0))  # fmt: skip

    @staticmethod
    def cat(items: list[TextFeatures]) -> TextFeatures:
        return TextFeatures(torch.cat([i.embeds for i in items]), torch.cat([i.hidden for i in items]),
                            torch.cat([i.mask for i in items]))  # fmt: skip


def sample_prior(prior, scheduler, cond: TextFeatures, uncond: TextFeatures, seeds: list[int], guidance: float,
                 steps: int, hook: StepHook) -> torch.Tensor:  # fmt: skip
    """CLIP image embeddings for the text features `cond` (one row per seed)."""
    dim = prior.config.embedding_dim
    latents = noise_for(seeds, (dim,), cond.embeds.device) * scheduler.init_noise_sigma
    both = TextFeatures.cat([uncond, cond]) if guidance > 1 else cond
    scheduler.set_timesteps(steps, device=latents.device)
    for t in scheduler.timesteps:
        hook()
        x = torch.cat([latents, latents]) if guidance > 1 else latents
        x = scheduler.scale_model_input(x, t)
        pred = prior(x, timestep=t, proj_embedding=both.embeds, encoder_hidden_states=both.hidden,
                     attention_mask=both.mask).predicted_image_embedding  # fmt: skip
        if guidance > 1:
            u, c = pred.chunk(2)
            pred = u + guidance * (c - u)
        latents = scheduler.step(pred, t, latents).prev_sample
    return prior.post_process_latents(latents)


def candidate_seeds(seeds: list[int], k: int) -> list[int]:
    """k prior candidates per seed, the first the seed itself: each output depends on its own seed only."""
    return [s if j == 0 else (s * 1_000_003 + 7919 * j) & 0x7FFFFFFFFFFFFFFF for s in seeds for j in range(k)]


def most_like_text(candidates: torch.Tensor, text: torch.Tensor, k: int) -> torch.Tensor:
    """Of each run of k candidate CLIP embeddings, the index (into all n·k) of the one most similar (cosine) to
    its text embedding. candidates: [n·k, D]; text: [n, D] or [1, D]."""
    e = torch.nn.functional.normalize(candidates.float().view(-1, k, candidates.shape[-1]), dim=-1)
    t = torch.nn.functional.normalize(text.float(), dim=-1).expand(e.shape[0], -1)
    sims = (e * t[:, None]).sum(-1)
    return torch.arange(e.shape[0], device=e.device) * k + sims.argmax(1)


def closest_to_text(embeds: torch.Tensor, text: torch.Tensor, k: int) -> torch.Tensor:
    """Of each run of k candidate image embeddings, the one most similar (cosine) to its text embedding, as
    DALL·E 2 reranks prior samples. embeds: [n·k, D]; text: [n, D] or [1, D]."""
    return embeds if k == 1 else embeds[most_like_text(embeds, text, k)]


@dataclass
class Inpainting:
    """Known latents and where to keep them (1 = keep), for the inpaint UNet."""

    latents: torch.Tensor  # [B, C, h, w]
    keep: torch.Tensor  # [B, 1, h, w]


def steps_run(steps: int, strength: float) -> int:
    """The decoder steps an image-to-image pass at `strength` runs (the rest of the schedule is skipped)."""
    return steps if strength >= 1.0 else max(1, min(steps, round(steps * strength)))


def sample_decoder(unet, scheduler, embeds: torch.Tensor, negative: torch.Tensor, seeds: list[int],
                   latent_shape: tuple[int, int, int], guidance: float, steps: int, hook: StepHook,
                   inpaint: Inpainting | None = None, init: torch.Tensor | None = None,
                   strength: float = 1.0) -> torch.Tensor:  # fmt: skip
    """Latents for CLIP image embeddings `embeds`. With `init`, start from that latent noised to `strength`
    (1.0: from pure noise), as image-to-image does."""
    device = embeds.device
    noise = noise_for(seeds, latent_shape, device)
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    if init is not None and strength < 1.0:
        keep_steps = steps_run(steps, strength)
        timesteps = timesteps[steps - keep_steps :]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(steps - keep_steps)
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(init.shape[0]))
    else:
        latents = noise * scheduler.init_noise_sigma
    cond = torch.cat([negative, embeds]) if guidance > 1 else embeds
    extra = None
    if inpaint is not None and unet.config.in_channels > latent_shape[0]:  # an inpaint UNet reads the known part
        masked = inpaint.latents * inpaint.keep
        extra = torch.cat([masked, inpaint.keep], 1)
        extra = torch.cat([extra, extra]) if guidance > 1 else extra
    channels = latent_shape[0]
    gens = step_generators(scheduler, seeds)
    for i, t in enumerate(timesteps):
        hook()
        x = torch.cat([latents, latents]) if guidance > 1 else latents
        x = scheduler.scale_model_input(x, t)
        if extra is not None:
            x = torch.cat([x, extra], 1)
        pred = unet(x, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": cond}).sample[:, :channels]
        if guidance > 1:
            u, c = pred.chunk(2)
            pred = u + guidance * (c - u)
        latents = scheduler.step(pred, t, latents, **gens).prev_sample
        if inpaint is not None:  # keep the known region on the current noise level, as the pipeline does
            if i + 1 < len(timesteps):
                known = scheduler.add_noise(inpaint.latents, noise, timesteps[i + 1 : i + 2].repeat(noise.shape[0]))
            else:
                known = inpaint.latents
            latents = inpaint.keep * known + (1 - inpaint.keep) * latents
    return latents


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation of embeddings (keeps the norm path of CLIP embeddings, as DALL·E 2 does).
    Rows where either side has no direction (a zero vector) are interpolated linearly."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    direction = (torch.sin((1 - w) * omega) / so) * ua + (torch.sin(w * omega) / so) * ub
    spherical = direction * ((1 - w) * na + w * nb)
    return torch.where((na > 1e-12) & (nb > 1e-12), spherical, (1 - w) * a + w * b)


def cancel_hook(cancel, progress, total: int) -> tuple[StepHook, Callable[[], int]]:
    """A hook to call before each step: raises Cancelled when `cancel` is set and reports progress."""
    done = [0]

    def hook() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        done[0] += 1
        if progress is not None:
            progress(min(done[0], total), total)

    return hook, lambda: done[0]
