"""The engine: one object that loads a model folder and serves every unCLIP capability."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unclip.engine import diffusion as D
from unclip.engine.components import Components, load_components, upscale_limit
from unclip.engine.compose import match_edges
from unclip.engine.errors import InvalidInput
from unclip.engine.images import (
    check_size,
    check_square,
    flatten,
    repaint_mask,
    to_pil,
    to_tensor,
)
from unclip.engine.masks import REPAINT_ALPHA
from unclip.engine.samplers import DEFAULT_SAMPLER, SAMPLERS, make_scheduler

Progress = Callable[[int, int], None]
MAX_N = 10


NEGATIVE_NEEDS_GUIDANCE = (
    "a negative prompt needs guidance above 1: at 1 or below no guidance is applied (the prompt alone steers) "
    "and the negative prompt would be ignored"
)


def check_negative_prompt(negative_prompt: str | None, guidance: float | None) -> None:
    """A negative prompt steers only through guidance: refuse one that would be ignored (guidance given, or the
    model's default, at 1 or below)."""
    if negative_prompt and guidance is not None and guidance <= 1:
        raise InvalidInput(NEGATIVE_NEEDS_GUIDANCE, param="negative_prompt")


def _seeds(seed: int | None, n: int) -> list[int]:
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return [(seed + i) & 0x7FFFFFFFFFFFFFFF for i in range(n)]


def prepare_upsamplers(upsamplers: dict[int, torch.nn.Module]) -> dict[int, torch.nn.Module]:
    """Keep the upsampler weights channels-last: oneDNN's NHWC convolutions are ~20% faster on CPU."""
    for m in upsamplers.values():
        m.to(memory_format=torch.channels_last)
    return upsamplers


def _cascade_stages(upsamplers: dict[int, torch.nn.Module], cur: int, size: int) -> list[int]:
    """The learned stages (256: `upsampler-256`, 1024: `upsampler-1024`) that take cur px up to size px."""
    stages = []
    while cur < size:
        if cur < 256 and 256 in upsamplers:
            stages.append(256)
            cur = 256
        elif 1024 in upsamplers and size in (512, 1024):
            stages.append(1024)
            cur = size
        else:
            break  # bicubic from here
    return stages


def upscale_cascade(upsamplers: dict[int, torch.nn.Module], x: torch.Tensor, size: int,
                    chunk: int | None = None, hook: D.StepHook | None = None) -> torch.Tensor:  # fmt: skip
    """Carry decoder output (N×3×h×w in [-1, 1]) up to size×size with the learned 4× stages: 64 → 256 with
    `upsampler-256`, 256 → 512/1024 with `upsampler-1024` (2× or 4×); bicubic where no stage fits.

    The stages run `chunk` images at a time (default: one at a time on CPU, where the full-resolution
    activations of a whole batch overflow the caches and the memory-bound norms and activations slow down
    by ~1.5×; the whole batch elsewhere). Each image's result does not depend on the batch it came in.
    `hook` is called before each chunk of each stage (progress, and cancellation between chunks)."""
    from unclip.models.upsampling import upsample

    chunk = upscale_chunk(x.shape[0], x.device) if chunk is None else chunk

    def run(model, y: torch.Tensor, scale: int) -> torch.Tensor:
        out = []
        for i in range(0, y.shape[0], chunk):
            if hook is not None:
                hook()
            out.append(upsample(model, y[i : i + chunk], scale))
        return torch.cat(out)

    for stage in _cascade_stages(upsamplers, x.shape[-1], size):
        if stage == 256:
            if x.shape[-1] != 64:
                x = F.interpolate(x, size=(64, 64), mode="area")
            x = run(upsamplers[256], x, 4)
        else:
            if x.shape[-1] != 256:
                x = F.interpolate(x, size=(256, 256), mode="bicubic", antialias=True).clamp(-1, 1)
            x = run(upsamplers[1024], x, size // 256)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(-1, 1)
    return x.contiguous()


def upscale_chunk(n: int, device: torch.device) -> int:
    return 1 if device.type == "cpu" else max(1, n)


def upscale_units(upsamplers: dict[int, torch.nn.Module], n: int, work: int, size: int,
                  device: torch.device) -> int:  # fmt: skip
    """How many times `upscale_cascade` calls its hook for n images from work px to size px."""
    return len(_cascade_stages(upsamplers, work, size)) * -(-n // upscale_chunk(n, device))


class Engine:
    """Generate, edit, outpaint, vary, blend and upscale with one unCLIP model folder."""

    prior_steps = 12
    decoder_steps = 12  # DPM-Solver++(2M): CLIP retrieval as at 16 steps (docs/performance.md), 25% less time
    prior_guidance = 4.0
    # prior samples drawn per image, the one closest to the text kept (DALL·E 2's reranking): +6 judged top-5
    # points summed over the cascade's six prompt groups for +0.8 s at n=4, 256 px (docs/performance.md)
    prior_candidates = 4
    # images decoded per requested image at the decoder's size, the one whose CLIP image embedding is closest
    # to the text's kept before upsampling (DALL·E 2's other reranking; docs/performance.md)
    decode_candidates = 1
    guidance = 4.0

    def __init__(self, components: Components, device: torch.device) -> None:
        self.c, self.device = components, device
        prepare_upsamplers(components.upsamplers)
        self.name = components.root.name
        self._text_cache: OrderedDict[str, D.TextFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self._zero: torch.Tensor | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", threads: int | None = None) -> Engine:
        from unclip import BUNDLED_MODEL_DIR

        root = Path(path) if path is not None else BUNDLED_MODEL_DIR
        if not root.is_dir():
            raise InvalidInput(f"model folder {root} does not exist", param="model")
        if device == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        dev = torch.device(device)
        return cls(load_components(root, dev), dev)

    # ---------------------------------------------------------------- capabilities
    @property
    def capabilities(self) -> set[str]:
        caps = {"generate", "vary", "blend"}
        caps |= {"edit", "outpaint"}  # the inpaint UNet is best; the decoder alone also repaints (RePaint-style)
        if self.c.upsamplers:
            caps.add("upscale")
        return caps

    # ---------------------------------------------------------------- conditioning
    def _text(self, prompts: Sequence[str]) -> D.TextFeatures:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            tok = self.c.tokenizer
            enc = tok(missing, padding="max_length", truncation=True, max_length=tok.model_max_length,
                      return_tensors="pt")  # fmt: skip
            out = self.c.text_encoder(enc.input_ids.to(self.device))
            for i, p in enumerate(missing):
                self._text_cache[p] = D.TextFeatures(out.text_embeds[i : i + 1], out.last_hidden_state[i : i + 1],
                                                     enc.attention_mask[i : i + 1].bool().to(self.device))  # fmt: skip
        for p in prompts:
            self._text_cache.move_to_end(p)
        result = D.TextFeatures.cat([self._text_cache[p] for p in prompts])
        while len(self._text_cache) > 512:  # least recently used first, after this call's own are read
            self._text_cache.popitem(last=False)
        return result

    def _image_embeds(self, images: Sequence[Image.Image]) -> torch.Tensor:
        x = to_tensor(list(images), self.c.image_size).to(self.device)
        return self.c.image_encoder(pixel_values=self.c.clip_pixels(x)).image_embeds

    def _zero_embed(self) -> torch.Tensor:
        if self._zero is None:
            s = self.c.image_size
            self._zero = self.c.image_encoder(pixel_values=torch.zeros(1, 3, s, s, device=self.device)).image_embeds
        return self._zero

    def _prior(self, prompt: str, seeds: list[int], guidance: float, steps: int, hook) -> torch.Tensor:
        """One CLIP image embedding per seed for `prompt` (see `_prior_for`)."""
        return self._prior_for(self._text([prompt]).repeat(len(seeds)), seeds, guidance, steps, hook)

    def _prior_for(self, text: D.TextFeatures, seeds: list[int], guidance: float, steps: int,
                   hook) -> torch.Tensor:  # fmt: skip
        """One CLIP image embedding per row of `text` (with its seed): the closest to that row's text embedding
        of `prior_candidates` prior samples, all drawn in one batch."""
        sched = make_scheduler(DEFAULT_SAMPLER, self.c.prior_scheduler_config, "sample")
        k = max(1, int(self.prior_candidates))
        cond, uncond = text.repeat(k), self._text([""]).repeat(len(seeds) * k)
        embeds = D.sample_prior(self.c.prior, sched, cond, uncond, D.candidate_seeds(seeds, k), guidance, steps, hook)
        return D.closest_to_text(embeds, text.embeds, k)

    def _negative(self, negative_prompt: str | None, seeds: list[int], steps: int, hook) -> torch.Tensor:
        if not negative_prompt:
            return self._zero_embed().expand(len(seeds), -1)
        return self._prior(negative_prompt, seeds, self.prior_guidance, steps, hook)

    # ---------------------------------------------------------------- decoding and sizes
    def _work_size(self, size: int) -> int:
        """The size the decoder renders at: its native size when learned upsamplers take it further; else `size`
        rounded up to what the UNet's downsampling divides (an outpaint frame can be any size), the result then
        resized to `size`."""
        if self.c.upsamplers:
            return self.c.native_size
        step = self.c.movq_factor * 2 ** (len(self.c.unet.config.block_out_channels) - 1)
        return -(-size // step) * step

    def _latent_shape(self, work: int) -> tuple[int, int, int]:
        f = self.c.movq_factor
        return (self.c.movq.config.latent_channels, work // f, work // f)

    def _to_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        return self.c.movq.decode(latents, force_not_quantize=True).sample.clamp(-1, 1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.c.movq.encode(x).latents

    def _upscale_to(self, x: torch.Tensor, size: int, hook: D.StepHook | None = None) -> torch.Tensor:
        """Carry decoder output up the cascade: 64 → 256 → 512/1024 with the learned stages."""
        return upscale_cascade(self.c.upsamplers, x, size, hook=hook)

    def _upscale_units(self, n: int, size: int) -> int:
        """Progress steps the upsampling of n decoded images to size px takes (one per image and stage)."""
        return upscale_units(self.c.upsamplers, n, self._work_size(size), size, self.device)

    def _decode(self, embeds, negative, seeds, size, guidance, steps, sampler, hook, *, unet=None,
                inpaint: D.Inpainting | None = None, init=None, strength=1.0,
                text: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Decode and upsample. With `text` (one text embedding per image), `decode_candidates` images are
        decoded per image (the first from its own seed) and the one closest to its text kept."""
        work = self._work_size(size)
        k = max(1, int(self.decode_candidates)) if text is not None else 1
        if k > 1:
            embeds, negative = embeds.repeat_interleave(k, 0), negative.repeat_interleave(k, 0)
            seeds = D.candidate_seeds(seeds, k)
        sched = make_scheduler(sampler, self.c.decoder_scheduler_config, "epsilon")
        latents = D.sample_decoder(unet or self.c.unet, sched, embeds, negative, seeds, self._latent_shape(work),
                                   guidance, steps, hook, inpaint=inpaint, init=init, strength=strength)  # fmt: skip
        x = self._to_pixels(latents)
        if k > 1:
            x = x[D.most_like_text(self._pixel_embeds(x), text, k)]
        return self._upscale_to(x, size, hook)

    def _pixel_embeds(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP image embeddings of decoded pixels (N×3×h×w in [-1, 1])."""
        s = self.c.image_size
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bicubic", antialias=True).clamp(-1, 1)
        return self.c.image_encoder(pixel_values=self.c.clip_pixels(x)).image_embeds

    # ---------------------------------------------------------------- validation
    def _common(self, n: int, steps: int | None, guidance: float | None, sampler: str | None):
        if not 1 <= n <= MAX_N:
            raise InvalidInput(f"n must be between 1 and {MAX_N}, got {n}", param="n")
        sampler = sampler or DEFAULT_SAMPLER
        if sampler not in SAMPLERS:
            raise InvalidInput(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}", param="sampler")
        steps = steps or self.decoder_steps
        if not 1 <= steps <= 200:
            raise InvalidInput(f"steps must be between 1 and 200, got {steps}", param="steps")
        guidance = self.guidance if guidance is None else float(guidance)
        if not 0 <= guidance <= 30:
            raise InvalidInput(f"guidance must be between 0 and 30, got {guidance}", param="guidance")
        return steps, guidance, sampler

    @staticmethod
    def _prompt(prompt: str, param: str = "prompt") -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput(f"{param} must be a non-empty string", param=param)
        if len(prompt) > 1000:
            raise InvalidInput(f"{param} is {len(prompt)} characters; the limit is 1000", param=param)
        return prompt.strip()

    def _finish(self, x: torch.Tensor, seeds: list[int], meta: dict) -> list[Image.Image]:
        images = to_pil(x)
        for im, s in zip(images, seeds, strict=True):
            im.info["unclip"] = {"model": self.name, "seed": s, **meta}
        return images

    # ---------------------------------------------------------------- public API
    @torch.inference_mode()
    def generate(self, prompt: str, n: int = 1, size: int = 256, seed: int | None = None,
                 guidance: float | None = None, steps: int | None = None, negative_prompt: str | None = None,
                 sampler: str | None = None, prior_steps: int | None = None, prior_guidance: float | None = None,
                 progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> list[Image.Image]:  # fmt: skip
        """n images for a caption: prior (caption → CLIP image embedding), decoder, upsamplers."""
        return self.generate_batch([prompt], [n], [seed], size=size, guidance=guidance, steps=steps,
                                   negative_prompt=negative_prompt, sampler=sampler, prior_steps=prior_steps,
                                   prior_guidance=prior_guidance, progress=progress, cancel=cancel)[0]  # fmt: skip

    @torch.inference_mode()
    def generate_batch(self, prompts: Sequence[str], ns: Sequence[int], seeds: Sequence[int | None] | None = None,
                       size: int = 256, guidance: float | None = None, steps: int | None = None,
                       negative_prompt: str | None = None, sampler: str | None = None,
                       prior_steps: int | None = None, prior_guidance: float | None = None,
                       progress: Progress | None = None,
                       cancel: threading.Event | None = None) -> list[list[Image.Image]]:  # fmt: skip
        """`generate` for several captions at once (ns[i] images for prompts[i], from seeds[i]), each model run
        once over all their images: a worker's batch of compatible requests. Each caption gets the images
        `generate` gives it for the same seed."""
        if not prompts or len(ns) != len(prompts) or (seeds is not None and len(seeds) != len(prompts)):
            raise InvalidInput("give one n (and one seed) per prompt", param="n")
        prompts = [self._prompt(p) for p in prompts]
        check_size(size)
        for n in ns:
            self._common(n, steps, guidance, sampler)
        steps, guidance, sampler = self._common(ns[0], steps, guidance, sampler)
        check_negative_prompt(negative_prompt, guidance)
        p_steps = prior_steps or self.prior_steps
        p_guid = self.prior_guidance if prior_guidance is None else prior_guidance
        per_prompt = [_seeds(s, n) for s, n in zip(seeds or [None] * len(ns), ns, strict=True)]
        every = [s for group in per_prompt for s in group]
        total = p_steps * (2 if negative_prompt else 1) + steps + self._upscale_units(len(every), size)
        hook, _ = D.cancel_hook(cancel, progress, total)
        with self._lock:
            text = D.TextFeatures.cat([self._text([p]).repeat(n) for p, n in zip(prompts, ns, strict=True)])
            embeds = self._prior_for(text, every, p_guid, p_steps, hook)
            negative = self._negative(negative_prompt, every, p_steps, hook)
            x = self._decode(embeds, negative, every, size, guidance, steps, sampler, hook, text=text.embeds)
        if progress:
            progress(total, total)
        out, start = [], 0
        for prompt, group in zip(prompts, per_prompt, strict=True):
            meta = {"prompt": prompt, "steps": steps, "sampler": sampler, "guidance": guidance, "size": size,
                    "negative_prompt": negative_prompt or ""}  # fmt: skip
            out.append(self._finish(x[start : start + len(group)], group, meta))
            start += len(group)
        return out

    def _repaint(self, canvas: Image.Image, mask: np.ndarray, embeds: torch.Tensor, seeds: list[int], size: int,
                 guidance: float, steps: int, sampler: str, hook, feather: bool = False, grow: bool = True,
                 alpha: np.ndarray | None = None) -> torch.Tensor:  # fmt: skip
        """Repaint the masked region (mask 1 = repaint) of a square RGB canvas; returns N×3×size×size.
        `feather`: the canvas's pixels under the mask are real content (an opaque image with a separate mask),
        so the new content fades in from the mask's border; otherwise they are only the white fill of
        transparent or not-yet-painted pixels, and blending towards them would draw a light seam.
        `grow`: repaint one more latent pixel around the mask, as diffusers' inpainting pipeline does.
        `alpha`: how much of the new content to take at each pixel (size×size), instead of the mask (and the
        repaint is taken as drawn: outpainting blends its frames' overlaps itself); without it, the repaint
        is shifted to meet the kept pixels at the mask's edge (`compose.match_edges`)."""
        work = self._work_size(size)
        x = to_tensor([canvas], work).to(self.device)
        known = self._encode(x)
        m = torch.from_numpy(mask)[None, None].to(self.device)
        repaint = F.interpolate(m, size=known.shape[-2:], mode="area")
        repaint = (repaint > 0).float()  # any covered pixel (a hole under 1% of a latent pixel was left as it was)
        if grow:
            repaint = F.max_pool2d(repaint, 3, stride=1, padding=1)
        n = len(seeds)
        inpaint = D.Inpainting(known.repeat(n, 1, 1, 1), (1 - repaint).repeat(n, 1, 1, 1))
        # Without an inpaint UNet the decoder repaints alone, replacing the known region at every step.
        unet = self.c.inpaint_unet or self.c.unet
        negative = self._zero_embed().expand(n, -1)
        out = self._decode(embeds, negative, seeds, size, guidance, steps, sampler, hook, unet=unet, inpaint=inpaint)
        # Pixels outside the mask come back exactly; inside, blend softly towards the border.
        orig = to_tensor([canvas], size).to(self.device)
        m_full = torch.from_numpy(mask)[None, None].to(self.device)
        if m_full.shape[-1] != size:
            m_full = (F.interpolate(m_full, size=(size, size), mode="area") > 0.5).float()
        soft = m_full
        if alpha is not None:
            soft = torch.from_numpy(alpha.astype(np.float32))[None, None].to(self.device)
        else:
            out = match_edges(out, orig, m_full)
            if feather:
                # the new content fades in over the mask's outermost pixels (the padding is not "outside the
                # mask": a mask reaching the border repaints up to it), relative to the deepest point nearby,
                # so that a mask a few pixels wide (a painted-over blemish or wire) is still repainted whole
                k = max(1, size // 256)
                depth = F.avg_pool2d(m_full, 2 * k + 1, stride=1, padding=k, count_include_pad=False)
                deepest = F.max_pool2d(depth * m_full, 2 * k + 1, stride=1, padding=k).clamp_min(1e-6)
                soft = m_full * (depth / deepest).clamp(max=1.0)
        return orig * (1 - soft) + out * soft

    @torch.inference_mode()
    def edit(self, image: Image.Image, prompt: str, mask: Image.Image | None = None, n: int = 1,
             size: int | None = None, seed: int | None = None, guidance: float | None = None,
             steps: int | None = None, sampler: str | None = None, progress: Progress | None = None,
             cancel: threading.Event | None = None) -> list[Image.Image]:  # fmt: skip
        """Inpainting: repaint where the mask (or the image's own alpha) is transparent; the rest is unchanged."""
        prompt = self._prompt(prompt)
        check_square(image)
        size = check_size(size or (image.width if image.width in (256, 512, 1024) else 256))
        steps, guidance, sampler = self._common(n, steps, guidance, sampler)
        m = repaint_mask(image, mask)
        # fade in from the border only where the image has real pixels under the mask (not transparent ones)
        feather = mask is not None and bool((np.asarray(image.convert("RGBA"))[..., 3] >= REPAINT_ALPHA)[m > 0].all())
        canvas = flatten(image)
        if canvas.width != size:
            canvas = canvas.resize((size, size), Image.Resampling.LANCZOS)
            # any output pixel that covers some of the area to repaint is repainted: NEAREST dropped small areas
            # (one transparent pixel of a 512 px image, edited at 256, came back unchanged and charged)
            small = Image.fromarray((m * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX)
            m = (np.asarray(small) > 0).astype(np.float32)
        seeds = _seeds(seed, n)
        total = self.prior_steps + steps + self._upscale_units(n, size)
        hook, _ = D.cancel_hook(cancel, progress, total)
        with self._lock:
            embeds = self._prior(prompt, seeds, self.prior_guidance, self.prior_steps, hook)
            x = self._repaint(canvas, m, embeds, seeds, size, guidance, steps, sampler, hook, feather=feather)
        if progress:
            progress(total, total)
        return self._finish(x, seeds, {"prompt": prompt, "steps": steps, "sampler": sampler, "mode": "edit",
                                       "guidance": guidance, "size": size})  # fmt: skip

    @torch.inference_mode()
    def outpaint(self, image: Image.Image, prompt: str, left: int = 0, right: int = 0, top: int = 0,
                 bottom: int = 0, canvas: tuple[int, int] | None = None, seed: int | None = None,
                 frame: int | None = None, overlap: float | None = None, guidance: float | None = None,
                 steps: int | None = None, sampler: str | None = None, progress: Progress | None = None,
                 cancel: threading.Event | None = None, at: tuple[int, int] | None = None,
                 ) -> Image.Image:  # fmt: skip
        """Extend the image to a larger canvas with overlapping frames. Frames sample with weak guidance by
        default (`outpaint.GUIDANCE`): continuing what is there matters more than the prompt's pull. With
        `canvas` (no extensions then), the image sits at `at` (x, y), or in the middle."""
        from unclip.engine import outpaint

        prompt = self._prompt(prompt)
        steps, guidance, sampler = self._common(1, steps, outpaint.GUIDANCE if guidance is None else guidance,
                                                sampler)  # fmt: skip
        frame = outpaint.FRAME if frame is None else frame
        overlap = outpaint.OVERLAP if overlap is None else overlap
        plan = outpaint.plan_canvas(image, left, right, top, bottom, canvas, frame, overlap, at)
        seed = _seeds(seed, 1)[0]
        total = self.prior_steps + (steps + self._upscale_units(1, plan.frame)) * len(plan.frames)
        hook, _ = D.cancel_hook(cancel, progress, total)
        with self._lock:
            embed = self._prior(prompt, [seed], self.prior_guidance, self.prior_steps, hook)
            result = outpaint.run_frames(self, plan, embed, seed, guidance, steps, sampler, hook)
        if progress:
            progress(total, total)
        result.info["unclip"] = {"model": self.name, "seed": seed, "prompt": prompt, "steps": steps,
                                 "sampler": sampler, "guidance": guidance, "mode": "outpaint",
                                 "frames": len(plan.frames)}  # fmt: skip
        return result

    @torch.inference_mode()
    def vary(self, image: Image.Image, n: int = 1, size: int = 256, strength: float = 1.0, seed: int | None = None,
             guidance: float | None = None, steps: int | None = None, sampler: str | None = None,
             progress: Progress | None = None, cancel: threading.Event | None = None) -> list[Image.Image]:  # fmt: skip
        """Variations decoded from the image's CLIP embedding. `strength` < 1 starts from the image itself
        noised that far, so the variations stay closer to its layout."""
        check_square(image)
        check_size(size)
        if not 0.05 <= strength <= 1.0:
            raise InvalidInput(f"strength must be between 0.05 and 1, got {strength}", param="strength")
        steps, guidance, sampler = self._common(n, steps, guidance, sampler)
        seeds = _seeds(seed, n)
        total = D.steps_run(steps, strength) + self._upscale_units(n, size)  # a progress bar that reaches its end
        hook, _ = D.cancel_hook(cancel, progress, total)
        with self._lock:
            emb = self._image_embeds([image]).expand(n, -1)
            init = None
            if strength < 1:
                init = self._encode(to_tensor([image], self._work_size(size)).to(self.device)).repeat(n, 1, 1, 1)
            negative = self._zero_embed().expand(n, -1)
            x = self._decode(emb, negative, seeds, size, guidance, steps, sampler, hook, init=init, strength=strength)
        if progress:
            progress(total, total)
        return self._finish(x, seeds, {"mode": "variation", "strength": strength, "steps": steps,
                                       "sampler": sampler, "guidance": guidance, "size": size})  # fmt: skip

    @torch.inference_mode()
    def blend(self, items: Sequence[tuple[str | Image.Image, float]], n: int = 1, size: int = 256,
              seed: int | None = None, guidance: float | None = None, steps: int | None = None,
              sampler: str | None = None, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> list[Image.Image]:  # fmt: skip
        """Interpolate prompts and images in CLIP image-embedding space (slerp for two, weighted mean for more)."""
        if len(items) < 2:
            raise InvalidInput("blend needs at least two items", param="items")
        weights = [float(w) for _, w in items]
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:  # NaN drew black images
            raise InvalidInput("blend weights must be finite, non-negative and not all zero", param="weights")
        check_size(size)
        steps, guidance, sampler = self._common(n, steps, guidance, sampler)
        seeds = _seeds(seed, n)
        n_text = sum(isinstance(it, str) for it, _ in items)
        total = n_text * self.prior_steps + steps + self._upscale_units(n, size)
        hook, _ = D.cancel_hook(cancel, progress, total)
        with self._lock:
            embs = []
            for it, _ in items:
                if isinstance(it, str):
                    embs.append(self._prior(self._prompt(it), seeds, self.prior_guidance, self.prior_steps, hook))
                elif isinstance(it, Image.Image):
                    check_square(it)
                    embs.append(self._image_embeds([it]).expand(n, -1))
                else:
                    raise InvalidInput("blend items are prompts (str) or images", param="items")
            # shares in Python floats: weights like 1e-50 are 0 in float32, and 0 / 0 drew black images
            w = torch.tensor([x / sum(weights) for x in weights], device=self.device)
            if len(embs) == 2:
                emb = D.slerp(embs[0], embs[1], float(w[1]))
            else:
                stack = torch.stack(embs)
                mean = (stack * w[:, None, None]).sum(0)
                norm = (stack.norm(dim=-1) * w[:, None]).sum(0, keepdim=True).T
                emb = mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12) * norm
            negative = self._zero_embed().expand(n, -1)
            x = self._decode(emb, negative, seeds, size, guidance, steps, sampler, hook)
        if progress:
            progress(total, total)
        labels = [it if isinstance(it, str) else "<image>" for it, _ in items]
        return self._finish(x, seeds, {"mode": "blend", "items": labels, "weights": weights, "steps": steps,
                                       "sampler": sampler, "guidance": guidance, "size": size})  # fmt: skip

    @torch.inference_mode()
    def upscale(self, image: Image.Image, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> Image.Image:  # fmt: skip
        """4× with the learned upsampler: up to 64 px → 256 px, up to 256 px → 1024 px."""
        from unclip.models.upsampling import input_multiple, upsample

        ups = self.c.upsamplers
        longest = max(image.size)
        if longest <= 64 and 256 in ups:
            model, target = ups[256], 64
        elif longest <= 256 and 1024 in ups:
            model, target = ups[1024], 256
        elif not ups:
            raise InvalidInput(f"model {self.name} has no learned upsampler", param="model")
        else:
            limit = upscale_limit(ups)
            raise InvalidInput(f"upscale takes images up to {limit} px on the longest side, got {longest}", "image")
        rgb = flatten(image)
        w, h = rgb.size
        scale = target / longest if longest > target else 1.0
        if scale != 1.0:  # small inputs are taken to the stage's size first (keeping the aspect ratio)
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = rgb.size
        step = max(8, -(-input_multiple(model) // 4))  # the 4× enlargement must fit the UNet's blocks
        pw, ph = -w % step, -h % step
        arr = np.pad(np.asarray(rgb), ((0, ph), (0, pw), (0, 0)), mode="edge")
        x = torch.from_numpy(arr).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)
        hook, _ = D.cancel_hook(cancel, progress, 1)
        with self._lock:
            hook()
            y = upsample(model, x, 4)[..., : h * 4, : w * 4]
        out = to_pil(y)[0]
        out.info["unclip"] = {"model": self.name, "mode": "upscale", "scale": 4}
        return out

