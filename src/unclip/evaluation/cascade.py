"""`unclip eval cascade`: which stage loses what. Each row takes one more stage away from the real image, on
the same pairs and seeds, and the judge scores every row:

1. real: the real render;
2. autoencoder: the real render through the VQ autoencoder and back (no diffusion);
3. decoder: the decoder from the real image's own CLIP image embedding;
4. canonical: prior + decoder from the canonical caption ("label, style phrase");
5. everyday: prior + decoder from the evaluation phrasings (evaluation/prompts.py);
6. canonical@256, everyday@256: rows 4 and 5 after the learned upsampler, at 256 px.

Rows 4 and 5 also give the prior's cosine: between the embedding it predicts for the prompt and the CLIP image
embedding of the real render the prompt asks for.

Also the colour check: flat discs through the autoencoder, mean RGB error per colour."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from unclip.data.emoji import family_hexcode
from unclip.data.shards import iter_samples
from unclip.engine import Engine
from unclip.engine.engine import upscale_cascade
from unclip.engine.samplers import DEFAULT_SAMPLER
from unclip.evaluation.judge import Scorer, Target, figure_cells, frechet, real_basis
from unclip.evaluation.prompts import EvalPrompt, build_prompts
from unclip.evaluation.stages import caption, image_embeds, prior_embeds, text_embeds
from unclip.training.data import ImageSet, load_images, shard_paths, to_unit

ROWS = ("real", "autoencoder", "decoder", "canonical", "everyday", "canonical@256", "everyday@256")
# the base groups, since the start (their figures compare across runs); the others split them further:
# English holdout pairs of which no gender or direction version of the same style was trained on, and the
# non-English prompts by kind (they are mostly holdout pairs, which English "seen" is not)
BASE_GROUPS = ("seen", "holdout", "non-English")
GROUPS = (*BASE_GROUPS, "holdout, no version trained", "non-English seen", "non-English holdout")
# what any stage of the bundled model trained on (configs/emoji-decoder-cpu.json and others; emoji-base trains
# on "train" alone: for its models the group "holdout, no version trained" is conservative, a little small)
TRAINED_SPLITS = ("train", "val", "test")
DISCS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 40),
    "green": (40, 180, 60),
    "blue": (30, 90, 220),
    "yellow": (250, 210, 40),
    "purple": (140, 60, 190),
    "cyan": (40, 200, 220),
    "pink": (245, 130, 180),
    "orange": (250, 140, 20),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
    "gold": (212, 175, 55),
    "dark green": (20, 90, 40),
}


def _float(x: torch.Tensor) -> torch.Tensor:
    return to_unit(x) if x.dtype == torch.uint8 else x


@torch.inference_mode()
def autoencode(engine: Engine, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Real images (uint8 or [-1, 1]) through the VQ autoencoder, the path the pipelines decode."""
    out = []
    for i in range(0, len(images), batch):
        x = _float(images[i : i + batch]).to(engine.device)
        out.append(engine._to_pixels(engine._encode(x)).cpu())
    return torch.cat(out)


@torch.inference_mode()
def decode_embeds(engine: Engine, embeds: torch.Tensor, seeds: list[int], batch: int = 32,
                  text: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The decoder's native-size images for CLIP image embeddings, with the engine's default settings; with
    the prompts' `text` embeddings, its reranking of decoded candidates too (`decode_candidates`)."""
    out = []
    native = engine.c.native_size
    for i in range(0, len(embeds), batch):
        e = embeds[i : i + batch].to(engine.device)
        t = None if text is None else text[i : i + batch].to(engine.device)
        negative = engine._zero_embed().expand(len(e), -1)
        x = engine._decode(e, negative, seeds[i : i + batch], native, engine.guidance, engine.decoder_steps,
                           DEFAULT_SAMPLER, lambda: None, text=t)  # fmt: skip
        out.append(x.cpu())
    return torch.cat(out)


def upscale(engine: Engine, x: torch.Tensor, size: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([upscale_cascade(engine.c.upsamplers, x[i : i + 8].to(engine.device), size).cpu()
                          for i in range(0, len(x), 8)])  # fmt: skip


def disc_image(colour: tuple[int, int, int], size: int = 64, radius: float = 0.36) -> Image.Image:
    big = size * 4
    im = Image.new("RGB", (big, big), "white")
    r = radius * big
    ImageDraw.Draw(im).ellipse((big / 2 - r, big / 2 - r, big / 2 + r, big / 2 + r), fill=colour)
    return im.resize((size, size), Image.Resampling.LANCZOS)


@torch.inference_mode()
def colour_check(engine: Engine, size: int = 64) -> dict[str, dict]:
    """Each flat disc through the autoencoder: the mean colour that comes back inside the disc (away from its
    edge) and the mean absolute RGB error there, in 0-255 units."""
    ims = [disc_image(c, size) for c in DISCS.values()]
    x = torch.from_numpy(np.stack([np.asarray(im) for im in ims])).permute(0, 3, 1, 2)
    rec = autoencode(engine, x).add(1).mul(127.5).clamp(0, 255)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inner = ((yy + 0.5 - size / 2) ** 2 + (xx + 0.5 - size / 2) ** 2).sqrt() < 0.28 * size
    result = {}
    for (name, colour), r in zip(DISCS.items(), rec, strict=True):
        pixels = r[:, inner]  # 3 × P
        truth = torch.tensor(colour, dtype=torch.float32)[:, None]
        result[name] = {
            "true": list(colour),
            "returned": [round(float(v)) for v in pixels.mean(1)],
            "mean_abs_error": round(float((pixels - truth).abs().mean()), 2),
        }
    return result


def _groups(prompts: list[EvalPrompt], trained: set[tuple[str, str]]) -> dict[str, list[int]]:
    """Prompt indices per group; `trained`: the (family hexcode, style) of every image trained on."""
    g: dict[str, list[int]] = {name: [] for name in GROUPS}
    for i, p in enumerate(prompts):
        if p.locale != "en":
            g["non-English"].append(i)
            g[f"non-English {p.kind}"].append(i)
            continue
        g[p.kind].append(i)
        if p.kind == "holdout" and (family_hexcode(p.base_hexcode), p.style) not in trained:
            g["holdout, no version trained"].append(i)
    return g


def trained_families(data: Path) -> set[tuple[str, str]]:
    """(family hexcode, style) of every image of the splits the stages train on (metadata only)."""
    found = set()
    for split in TRAINED_SPLITS:
        try:
            paths = shard_paths(data, 64, split)
        except FileNotFoundError:
            if split == "train":
                raise
            continue  # a dataset without this split: nothing of it was trained on
        for sample in iter_samples(paths):
            meta = json.loads(sample["json"])
            found.add((family_hexcode(meta["base_hexcode"]), meta["style"]))
    return found


class RowsError(ValueError):
    """`rows` names a row that does not exist, or an upscaled row without the row it upscales."""


def check_rows(rows: tuple[str, ...]) -> None:
    """Before any image is made: a wrong `rows` was only said after every row before it was computed."""
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise RowsError(f"unknown cascade rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    for row in rows:
        needs = row.split("@")[0]
        if needs != row and needs not in rows:
            raise RowsError(f"cascade row {row} upscales row {needs}: ask for both")


def eval_cascade(
    engine: Engine,
    scorer: Scorer,
    data: Path,
    n: int = 160,
    seed: int = 0,
    out_dir: Path | None = None,
    rows: tuple[str, ...] = ROWS,
) -> dict:
    """n prompts per kind (seen, holdout); one image per prompt and row, seed = seed + prompt index. `rows`:
    which rows to compute (the real row always is; an autoencoder alone, say, needs no decoder)."""
    check_rows(rows)
    splits = {"seen": load_images(data, 64, "train"), "holdout": load_images(data, 64, "holdout")}
    prompts = build_prompts(splits["seen"].meta, splits["holdout"].meta, n_per_kind=n, seed=seed)
    where = {m["key"]: (kind, i) for kind, s in splits.items() for i, m in enumerate(s.meta)}
    real = torch.stack([splits[where[p.key][0]].images[where[p.key][1]] for p in prompts])
    metas = [splits[where[p.key][0]].meta[where[p.key][1]] for p in prompts]
    seeds = [seed + i for i in range(len(prompts))]
    targets = [Target(p.base_hexcode, p.style) for p in prompts]

    canonical = [caption(m, p.locale) for m, p in zip(metas, prompts, strict=True)]
    texts = {"canonical": canonical, "everyday": [p.prompt for p in prompts]}
    predicted: dict[str, torch.Tensor] = {}

    def from_prior(row: str) -> torch.Tensor:
        predicted[row] = prior_embeds(engine, texts[row], seed)
        return decode_embeds(engine, predicted[row], seeds, text=text_embeds(engine, texts[row]))

    make = {
        "autoencoder": lambda: autoencode(engine, real),
        "decoder": lambda: decode_embeds(engine, image_embeds(engine, real, normalize=False), seeds),
        "canonical": lambda: from_prior("canonical"),
        "everyday": lambda: from_prior("everyday"),
        "canonical@256": lambda: upscale(engine, images["canonical"], 256),
        "everyday@256": lambda: upscale(engine, images["everyday"], 256),
    }
    images: dict[str, torch.Tensor] = {"real": _float(real)}
    skipped: dict[str, str] = {}
    for row in ROWS[1:]:
        if row not in rows:
            continue
        if "@" in row and 256 not in engine.c.upsamplers:
            skipped[row] = "the model has no 64 to 256 px upsampler"
            continue
        images[row] = make[row]()

    outs = {row: scorer.predict(x) for row, x in images.items()}
    cosine = {}
    if predicted:
        true = image_embeds(engine, real).cpu()
        cosine = {row: torch.nn.functional.cosine_similarity(e.cpu(), true) for row, e in predicted.items()}
    groups = _groups(prompts, trained_families(data))
    references = _references(scorer, splits, prompts, groups, seed)
    basis = real_basis(scorer, splits["seen"], seed=seed + 2)
    table: dict = {}
    for row, out in outs.items():
        table[row] = {}
        for name, idx in groups.items():
            if not idx:
                continue
            t = torch.tensor(idx)
            sub = out.take(idx)
            figures = scorer.score(sub, [targets[i] for i in idx])
            if name in references:
                figures["frechet"] = frechet(sub.features, references[name], basis)
            if row in cosine:
                figures["prior_cosine"] = float(cosine[row][t].mean())
            table[row][name] = figures
    floor = {name: table["real"][name]["frechet"] for name in references}
    result = {
        "model": str(engine.c.root),
        "prompts": {"seen": n, "holdout": n, **{g: len(i) for g, i in groups.items()}},
        "settings": {"decoder_steps": engine.decoder_steps, "prior_steps": engine.prior_steps,
                     "prior_candidates": engine.prior_candidates, "decode_candidates": engine.decode_candidates,
                     "guidance": engine.guidance, "prior_guidance": engine.prior_guidance, "seed": seed},
        "rows": table,
        **({"skipped_rows": skipped} if skipped else {}),
        "frechet_real_vs_real": floor,
        "colour_discs": colour_check(engine),
    }  # fmt: skip
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [
            f"{p.kind}\t{p.locale}\t{p.style}\t{p.key}\t{c}\t{p.prompt}\n"
            for p, c in zip(prompts, canonical, strict=True)
        ]
        header = "kind\tlocale\tstyle\tkey\tcanonical\tprompt\n"
        (out_dir / "prompts.tsv").write_text(header + "".join(rows), encoding="utf-8")
        contact_sheet(images, prompts, canonical, out_dir / "cascade.png", seed)
        (out_dir / "cascade.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _references(scorer: Scorer, splits: dict[str, ImageSet], prompts: list[EvalPrompt],
                groups: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """For each group, judge features of as many real renders of other pairs, drawn as the group's prompts
    are: base emoji only (no skin-tone variants), each kind (seen, holdout) in the group's own proportion, no
    pair a prompt asks for. Every row is compared with this disjoint sample, so the real row's distance is the
    floor that a perfect generator would reach at that n, and the rows' distances can be read against it.
    (Drawn from every image of the kinds, the sample was half skin-tone variants, some of the asked pairs
    themselves, and a mixed group's almost all seen: the floor measured the difference.)"""
    rng = random.Random(seed + 1)
    asked = {(p.base_hexcode, p.style) for p in prompts}
    pools = {
        kind: [
            j
            for j, m in enumerate(split.meta)
            if m["hexcode"] == m["base_hexcode"] and (m["base_hexcode"], m["style"]) not in asked
        ]
        for kind, split in splits.items()
    }
    result = {}
    for name, idx in groups.items():
        need = Counter(prompts[i].kind for i in idx)
        if len(idx) < 2 or any(len(pools[kind]) < n for kind, n in need.items()):
            continue
        pick = [(kind, j) for kind in sorted(need) for j in rng.sample(pools[kind], need[kind])]
        result[name] = scorer.predict(torch.stack([splits[k].images[j] for k, j in pick])).features
    return result


def contact_sheet(images: dict[str, torch.Tensor], prompts: list[EvalPrompt], canonical: list[str],
                  out_png: Path, seed: int, per_kind: int = 6, thumb: int = 96) -> Path:  # fmt: skip
    """A grid: one pair per line (seen, holdout, non-English), one cascade row per column."""
    rng = random.Random(seed)
    groups = _groups(prompts, set())
    picks = [i for name in BASE_GROUPS for i in sorted(rng.sample(groups[name], min(per_kind, len(groups[name]))))]
    cols = list(images)
    head = 16
    sheet = Image.new("RGB", (len(cols) * thumb, head + len(picks) * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, name in enumerate(cols):
        draw.text((c * thumb + 3, 2), name, fill=(60, 60, 60), font=font)
    for r, i in enumerate(picks):
        for c, name in enumerate(cols):
            x = images[name][i].float().add(1).mul(127.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
            resample = Image.Resampling.LANCZOS if x.shape[0] > thumb else Image.Resampling.NEAREST
            sheet.paste(Image.fromarray(x).resize((thumb, thumb), resample), (c * thumb, head + r * thumb))
        draw.text((2, head + r * thumb + 1), str(r + 1), fill=(90, 90, 90), font=font)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png, optimize=True)
    lines = [
        "| # | kind | locale | style | canonical caption | everyday prompt |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r, i in enumerate(picks):
        p = prompts[i]
        lines.append(f"| {r + 1} | {p.kind} | {p.locale} | {p.style} | {canonical[i]} | {p.prompt} |")
    out_png.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_png


def markdown_table(result: dict) -> str:
    """The cascade as Markdown: one line per row and group."""
    lines = [
        "| row | pairs | n | concept top-1 | concept top-5 | style | group | Fréchet (judge) | prior cosine |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row, groups in result["rows"].items():
        for name, f in groups.items():
            cos = f"{f['prior_cosine']:.3f}" if "prior_cosine" in f else ""
            fd = f"{f['frechet']:.1f}" if "frechet" in f else ""  # none: under 2 prompts, or too few other pairs
            lines.append(f"| {row} | {name} | {figure_cells(f)} | {fd} | {cos} |")
    ref = result.get("frechet_real_vs_real", {})
    if ref:
        lines.append("")
        lines.append("Fréchet distance (in the judge's 32 main feature directions) to a disjoint sample of as many "
                     "real renders of other pairs; the real row is the floor: "
                     + ", ".join(f"{k} {v:.1f}" for k, v in ref.items()) + ".")  # fmt: skip
    discs = result.get("colour_discs", {})
    if discs:
        lines += ["", "| disc | true RGB | returned RGB | mean abs error |", "| --- | --- | --- | ---: |"]
        for name, d in discs.items():
            lines.append(
                f"| {name} | {tuple(d['true'])} | {tuple(d['returned'])} | {d['mean_abs_error']:.1f} |"
            )
    return "\n".join(lines) + "\n"
