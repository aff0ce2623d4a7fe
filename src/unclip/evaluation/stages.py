"""Evaluate each unCLIP stage on the emoji test split and the holdout pairs. Every figure that involves
meaning (retrieval, Fréchet distance) is measured with the model's own CLIP."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unclip.data.captions import STYLE_PHRASES
from unclip.data.render import on_white, render
from unclip.data.sources import STYLES
from unclip.engine import Engine
from unclip.evaluation.metrics import edge_sharpness, frechet_distance, pair_hits, psnr, sharpness, ssim, topk
from unclip.evaluation.prompts import build_prompts
from unclip.models.upsampling import upsample
from unclip.training.data import ImageSet, load_images, load_splits, to_unit


def caption(meta: dict, locale: str = "en") -> str:
    label = meta["label"] if locale == "en" else meta["captions"].get(locale, [meta["label"]])[0]
    return f"{label}, {STYLE_PHRASES[meta['style']][0]}"


@torch.inference_mode()
def text_embeds(engine: Engine, texts: list[str], batch: int = 512) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch):
        out.append(engine._text(texts[i : i + batch]).embeds)
        engine._text_cache.clear()
    return F.normalize(torch.cat(out).float(), dim=-1)


@torch.inference_mode()
def image_embeds(
    engine: Engine, images: torch.Tensor, batch: int = 256, normalize: bool = True
) -> torch.Tensor:
    """images: uint8 N×3×H×W or float [-1, 1], resized to the CLIP tower's size as the engine does (an area
    resize enlarged 64 px images to a public model's 224 px in blocks)."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        x = to_unit(x) if x.dtype == torch.uint8 else x
        out.append(engine._pixel_embeds(x.to(engine.device)).float())
    e = torch.cat(out)
    return F.normalize(e, dim=-1) if normalize else e


def _subset(images: ImageSet, idx: list[int]) -> ImageSet:
    t = torch.tensor(idx, dtype=torch.long)
    return ImageSet(
        images.images[t],
        images.alpha[t],
        [images.meta[i] for i in idx],
        images.base_ids[t],
        images.style_ids[t],
    )


# The split the stage figures are measured on: the holdout pairs, which no config may train on (the shipped
# model's text side, autoencoder and decoder also train on `test`: figures there would measure fit)
UNTRAINED = "holdout"


def eval_clip(engine: Engine, data: Path) -> dict:
    """Zero-shot text→image retrieval on the holdout pairs (`UNTRAINED`): per style (label alone, among that
    style's images) and overall (label + style phrase, among all of them); and the evaluation phrasings'
    (`eval_phrasings`)."""
    test = load_images(data, 64, UNTRAINED)
    img = image_embeds(engine, test.images)
    hexes = [m["hexcode"] for m in test.meta]
    result: dict = {"per_style": {}}
    for style in STYLES:
        idx = [i for i, m in enumerate(test.meta) if m["style"] == style]
        if not idx:
            continue
        txt = text_embeds(engine, [test.meta[i]["label"] for i in idx])
        correct = torch.tensor([[hexes[i] == hexes[j] for j in idx] for i in idx])
        result["per_style"][style] = {**topk(txt @ img[idx].T, correct), "candidates": len(idx)}
    txt = text_embeds(engine, [caption(m) for m in test.meta])
    keys = [(m["hexcode"], m["style"]) for m in test.meta]
    correct = torch.tensor([[a == b for b in keys] for a in keys])
    result["overall"] = {**topk(txt @ img.T, correct), "candidates": len(keys)}
    result["split"] = UNTRAINED
    result["phrasings"] = eval_phrasings(engine, data)
    return result


def eval_phrasings(engine: Engine, data: Path, n_per_kind: int = 600, seed: int = 0) -> dict:
    """The text tower alone, on the judge's evaluation phrasings (everyday words, ten languages) and on the
    canonical captions of the same (emoji, style) pairs, seen and holdout: how often the closest of the
    emoji's renders (every split) is the asked style, and how often the emoji is in the top 5 of that style's
    renders. A minute's check on a text-side run before the judge's cascade; holdout pairs show whether the
    text side can pair a known emoji with a known style it was never seen in."""
    everything = load_splits(data, 64, ["train", "val", "test", "holdout"])
    img = image_embeds(engine, everything.images)
    row = {m["key"]: i for i, m in enumerate(everything.meta)}
    seen = [m for m in everything.meta if m["split"] == "train"]
    holdout = [m for m in everything.meta if m["split"] == "holdout"]
    meta = {m["key"]: m for m in seen + holdout}
    prompts = build_prompts(seen, holdout, n_per_kind=n_per_kind, seed=seed)
    target = torch.tensor([row[p.key] for p in prompts])
    result: dict = {}
    for wording in ("everyday", "canonical"):
        texts = [p.prompt if wording == "everyday" else caption(meta[p.key], p.locale) for p in prompts]
        style_hit, emoji_hit = pair_hits(
            text_embeds(engine, texts) @ img.T, everything.base_ids, everything.style_ids, target
        )
        for kind in ("seen", "holdout"):
            for lang in ("English", "non-English"):
                sel = torch.tensor(
                    [p.kind == kind and (p.locale == "en") == (lang == "English") for p in prompts], dtype=torch.bool
                )
                if not sel.any():
                    continue
                result.setdefault(wording, {}).setdefault(kind, {})[lang] = {
                    "style": float(style_hit[sel].float().mean()),
                    "emoji_top5": float(emoji_hit[sel].float().mean()),
                    "prompts": int(sel.sum()),
                }
    return result


@torch.inference_mode()
def prior_embeds(engine: Engine, prompts: list[str], seed: int = 0, batch: int = 128) -> torch.Tensor:
    """The engine's prior for each prompt (seed + index), with its reranking (`prior_candidates`)."""
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        seeds = list(range(seed + i, seed + i + len(chunk)))
        out.append(engine._prior_for(engine._text(chunk), seeds, engine.prior_guidance, engine.prior_steps,
                                     lambda: None))  # fmt: skip
        engine._text_cache.clear()
    return torch.cat(out).float()


def eval_prior(engine: Engine, data: Path, n_seen: int = 400, seed: int = 0) -> dict:
    """Cosine similarity of predicted to true image embeddings and retrieval of the true image, for seen pairs
    (train) and holdout pairs (never trained on); next to the baseline of using the text embedding. (The test
    split is left out: the shipped text side trains on it.)"""
    sets = {"seen": load_images(data, 64, "train"), "holdout": load_images(data, 64, UNTRAINED)}
    rng = random.Random(seed)
    sets["seen"] = _subset(
        sets["seen"], sorted(rng.sample(range(len(sets["seen"])), min(n_seen, len(sets["seen"]))))
    )
    result = {}
    for name, imgs in sets.items():
        prompts = [caption(m) for m in imgs.meta]
        true = image_embeds(engine, imgs.images, normalize=False)
        pred = prior_embeds(engine, prompts, seed)
        txt = text_embeds(engine, prompts)
        keys = [(m["hexcode"], m["style"]) for m in imgs.meta]
        correct = torch.tensor([[a == b for b in keys] for a in keys])
        true_n = F.normalize(true, dim=-1)
        pred_n = F.normalize(pred, dim=-1)
        result[name] = {
            "pairs": len(keys),
            "prior": {"cosine": float((pred_n * true_n).sum(-1).mean()), **topk(pred_n @ true_n.T, correct)},
            "text_baseline": {
                "cosine": float((txt * true_n).sum(-1).mean()),
                **topk(txt @ true_n.T, correct),
            },
        }
    return result


@torch.inference_mode()
def eval_movq(engine: Engine, data: Path) -> dict:
    """Reconstruction of the holdout pairs' renders (`UNTRAINED`) through the autoencoder, with and without
    its quantiser."""
    test = load_images(data, 64, UNTRAINED)
    x = to_unit(test.images).to(engine.device)
    outs_h, outs_q = [], []
    for i in range(0, len(x), 128):
        h = engine.c.movq.encode(x[i : i + 128]).latents
        outs_h.append(engine.c.movq.decode(h, force_not_quantize=True).sample.clamp(-1, 1))
        outs_q.append(engine.c.movq.decode(h).sample.clamp(-1, 1))
    rec_h, rec_q = torch.cat(outs_h), torch.cat(outs_q)
    return {
        "split": UNTRAINED,
        "images": len(x),
        "psnr": psnr(rec_h, x),
        "ssim": ssim(rec_h, x),
        "psnr_quantized": psnr(rec_q, x),
        "ssim_quantized": ssim(rec_q, x),
    }


def _lanczos(x: torch.Tensor, size: int) -> torch.Tensor:
    arr = x.add(1).mul(127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    up = [np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in arr]
    return torch.from_numpy(np.stack(up)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def _render_set(data: Path, n: int, sizes: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(data / "svg" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        svgs = [json.loads(line)["svg"] for line in f]
    rng = random.Random(seed)
    pick = rng.sample(svgs, min(n, len(svgs)))
    lows = [on_white(render(s, sizes[0])) for s in pick]
    highs = [on_white(render(s, sizes[1])) for s in pick]

    def t(a):
        return torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float().div(127.5).sub(1)

    return t(lows), t(highs)


@torch.inference_mode()
def eval_upsampler(engine: Engine, data: Path, n: int = 48, seed: int = 0) -> dict:
    """PSNR and sharpness of the learned 4× stages against Lanczos, on test-split emoji rendered from the same
    SVG at both sizes."""
    result = {}
    for size, (lo, hi, count) in {256: (64, 256, n), 1024: (256, 1024, max(8, n // 4))}.items():
        if size not in engine.c.upsamplers:
            continue
        low, high = _render_set(data, count, (lo, hi), seed)
        ours = torch.cat(
            [
                upsample(engine.c.upsamplers[size], low[i : i + 8].to(engine.device), 4).cpu()
                for i in range(0, len(low), 8)
            ]
        )
        lanczos = _lanczos(low, hi)
        result[f"{lo}->{hi}"] = {
            "images": len(low),
            "psnr": {"learned": psnr(ours, high), "lanczos": psnr(lanczos, high)},
            "ssim": {"learned": ssim(ours, high), "lanczos": ssim(lanczos, high)},
            "edge_sharpness": {"learned": edge_sharpness(ours, high), "lanczos": edge_sharpness(lanczos, high)},
            "mean_gradient": {
                "learned": sharpness(ours),
                "lanczos": sharpness(lanczos),
                "ground_truth": sharpness(high),
            },
        }
    return result


def sample_indices(count: int, n: int, seed: int) -> list[int]:
    """n of range(count), the same for the same seed."""
    return sorted(random.Random(seed).sample(range(count), min(n, count)))


def eval_generation(
    engine: Engine, data: Path, n: int = 64, size: int = 256, seed: int = 0, out_dir: Path | None = None
) -> dict:
    """Generate one image per prompt for test-split and holdout-pair prompts. Report how often our CLIP
    retrieves the generated image's own emoji among all emoji (same style phrase), next to the figure for the
    real image, and the Fréchet distance between generated and real images in CLIP image-feature space."""
    all_meta: dict[str, str] = {}
    for split in ("train", "val", "test", "holdout"):
        all_meta.update(_labels(data, split))
    hexes = sorted(all_meta)
    result = {}
    for split in ("test", "holdout"):
        imgs = load_images(data, 64, split)
        idx = sample_indices(len(imgs), n, seed)
        gen, real, correct_rows, cand_sims_gen, cand_sims_real = [], [], [], [], []
        by_style: dict[str, torch.Tensor] = {}
        for i in idx:
            m = imgs.meta[i]
            im = engine.generate(caption(m), n=1, size=size, seed=seed + i)[0]
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                im.save(out_dir / f"{split}_{m['key']}.png")
            gen.append(
                torch.from_numpy(np.asarray(im.resize((64, 64), Image.Resampling.LANCZOS))).permute(2, 0, 1)
            )
            real.append(imgs.images[i])
        g = image_embeds(engine, torch.stack(gen))
        r = image_embeds(engine, torch.stack(real))
        for k, i in enumerate(idx):
            m = imgs.meta[i]
            style = m["style"]
            if style not in by_style:
                by_style[style] = text_embeds(
                    engine, [f"{all_meta[h]}, {STYLE_PHRASES[style][0]}" for h in hexes]
                )
            cand = by_style[style]
            cand_sims_gen.append(g[k] @ cand.T)
            cand_sims_real.append(r[k] @ cand.T)
            correct_rows.append(torch.tensor([h == m["hexcode"] for h in hexes]))
        correct = torch.stack(correct_rows)
        result[split] = {
            "prompts": len(idx),
            "candidates": len(hexes),
            "generated": topk(torch.stack(cand_sims_gen), correct),
            "real": topk(torch.stack(cand_sims_real), correct),
            "frechet_clip": frechet_distance(g.numpy(), r.numpy()),
        }
    return result


def _labels(data: Path, split: str) -> dict[str, str]:
    """hexcode → English label for every image of a split, read from the shards' JSON alone."""
    from unclip.data.shards import iter_samples
    from unclip.training.data import shard_paths

    labels = {}
    for sample in iter_samples(shard_paths(data, 64, split)):
        m = json.loads(sample["json"])
        labels[m["hexcode"]] = m["label"]
    return labels
