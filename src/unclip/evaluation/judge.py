"""Score images with the judge (models/judge-emoji): does an image show the emoji and the style that were
asked for? And the judge's own ceiling and floor, so that its figures can be read."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from unclip import REPO_ROOT
from unclip.evaluation.metrics import frechet_distance
from unclip.models.judge import Judge, JudgeOutput, is_probe_pair
from unclip.training.data import ImageSet, to_unit

BUNDLED_JUDGE_DIR = REPO_ROOT / "models" / "judge-emoji"


@dataclass
class Target:
    """What an image was asked to show."""

    base_hexcode: str
    style: str


class Scorer:
    """The judge with its class names: predicts, scores against targets, measures Fréchet distances."""

    def __init__(self, judge: Judge, batch: int = 256) -> None:
        self.judge, self.batch = judge, batch
        c = judge.classes
        self.concept_index = {h: i for i, h in enumerate(c["concept"])}
        self.style_index = {s: i for i, s in enumerate(c["style"])}
        self.concept_group = torch.tensor(c["concept_group"])
        self.probe_percent = int(judge.info.get("probe_percent", 4))

    @classmethod
    def load(cls, folder: Path | None = None) -> Scorer:
        return cls(Judge.load(folder if folder is not None else BUNDLED_JUDGE_DIR))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> JudgeOutput:
        """images: uint8 N×3×H×W, or float in [-1, 1]; any square size (resized to 64 px)."""
        outs = []
        for i in range(0, len(images), self.batch):
            x = images[i : i + self.batch]
            x = to_unit(x) if x.dtype == torch.uint8 else x.float()
            outs.append(self.judge(x))
        return JudgeOutput(
            *(torch.cat([getattr(o, f) for o in outs]).float() for f in JudgeOutput.__dataclass_fields__)
        )

    def score(self, out: JudgeOutput, targets: list[Target]) -> dict[str, float]:
        """Concept top-1 and top-5 (skin tones count as their base emoji), group and style accuracy, in %."""
        known = [i for i, t in enumerate(targets) if t.base_hexcode in self.concept_index]
        if len(known) < len(targets):
            missing = sorted({t.base_hexcode for t in targets if t.base_hexcode not in self.concept_index})
            raise ValueError(f"the judge does not know {len(missing)} of the requested emoji: {missing[:5]}")
        concept = torch.tensor([self.concept_index[t.base_hexcode] for t in targets])
        style = torch.tensor([self.style_index.get(t.style, -1) for t in targets])
        top5 = out.concept.topk(min(5, out.concept.shape[1]), dim=1).indices
        return {
            "n": len(targets),
            "concept_top1": 100 * float((top5[:, 0] == concept).float().mean()),
            "concept_top5": 100 * float((top5 == concept[:, None]).any(1).float().mean()),
            "group": 100 * float((out.group.argmax(1) == self.concept_group[concept]).float().mean()),
            "style": 100 * float((out.style.argmax(1) == style).float().mean()),
        }

    def evaluate(self, images: torch.Tensor, targets: list[Target]) -> tuple[dict[str, float], JudgeOutput]:
        out = self.predict(images)
        return self.score(out, targets), out


def targets_of(meta: list[dict]) -> list[Target]:
    return [Target(m["base_hexcode"], m["style"]) for m in meta]


FRECHET_DIMS = 32  # principal components of real renders' features the distance is measured in


@dataclass
class Basis:
    """The main directions of the judge's features over real renders. A Fréchet distance between samples of a
    few hundred images is noise in all 320 dimensions (the covariances cannot be estimated there); in the 32
    that carry most of the variance it separates good images from poor ones."""

    mean: torch.Tensor
    components: torch.Tensor  # [D, k]

    @classmethod
    def fit(cls, features: torch.Tensor, k: int = FRECHET_DIMS) -> Basis:
        mean = features.double().mean(0)
        _, _, v = torch.linalg.svd(features.double() - mean, full_matrices=False)
        return cls(mean, v[:k].T)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return (features.double() - self.mean) @ self.components


def frechet(a: torch.Tensor, b: torch.Tensor, basis: Basis) -> float:
    """Fréchet distance between two sets of judge features, in `basis`."""
    d = frechet_distance(basis.project(a).numpy(), basis.project(b).numpy())
    return max(0.0, d) if math.isfinite(d) else math.nan  # a failed square root is no perfect 0


def real_basis(scorer: Scorer, images: ImageSet, n: int = 2000, seed: int = 0) -> Basis:
    """The basis fitted to the judge's features of n random real renders."""
    idx = sorted(random.Random(seed).sample(range(len(images)), min(n, len(images))))
    return Basis.fit(scorer.predict(images.images[torch.tensor(idx)]).features)


def _subset(images: ImageSet, idx: list[int]) -> tuple[torch.Tensor, list[dict]]:
    return images.images[torch.tensor(idx, dtype=torch.long)], [images.meta[i] for i in idx]


def flat_images(n: int, seed: int, kind: str, size: int = 64) -> torch.Tensor:
    """Images with nothing to recognise: "noise" (uniform), "blank" (white, black, grey or one random colour)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    colours = torch.randint(0, 256, (n, 3), generator=g, dtype=torch.uint8)
    colours[0::4], colours[1::4], colours[2::4] = 255, 0, 128
    return colours[:, :, None, None].expand(n, 3, size, size).contiguous()


def judge_report(scorer: Scorer, data: Path, n: int = 300, seed: int = 0) -> dict:
    """The judge's ceiling and floor: its figures on real renders of every split (the pairs it trained on),
    on the pairs it never saw (holdout pairs, and its own probe pairs: a known emoji in a known style, never
    together), and on noise and blank images given the targets of real renders; the Fréchet distance between
    two disjoint samples of n real renders (the figure a perfect generator would get at that n)."""
    from unclip.training.judge import judge_parts, load_all

    images = load_all(data)
    parts = judge_parts(images, scorer.probe_percent)
    by: dict[str, list[int]] = {}
    for i, m in enumerate(images.meta):
        if parts[i] == "twin":
            continue
        if m["split"] == "holdout":
            key = "holdout pairs (never trained on)"
        elif is_probe_pair(m["base_hexcode"], m["style"], scorer.probe_percent):
            key = "probe pairs (never trained on)"
        else:
            key = f"{m['split']} (trained on)"
        by.setdefault(key, []).append(i)
    result: dict = {"real": {}}
    for key in sorted(by, key=lambda k: ("never" in k, k)):
        x, meta = _subset(images, by[key])
        result["real"][key], _ = scorer.evaluate(x, targets_of(meta))
    rng = random.Random(seed)
    floor_targets = targets_of([images.meta[i] for i in rng.sample(range(len(images)), n)])
    result["floor"] = {
        kind: scorer.evaluate(flat_images(n, seed, kind), floor_targets)[0] for kind in ("noise", "blank")
    }
    order = list(range(len(images)))
    rng.shuffle(order)
    a, _ = _subset(images, sorted(order[:n]))
    b, _ = _subset(images, sorted(order[n : 2 * n]))
    basis = real_basis(scorer, images, seed=seed + 1)
    result["frechet_real_vs_real"] = {
        "n": n,
        "dims": basis.components.shape[1],
        "distance": frechet(scorer.predict(a).features, scorer.predict(b).features, basis),
    }
    return result


def figure_cells(f: dict) -> str:
    """A judged group's figures as Markdown cells: n, concept top-1 and top-5, style, group."""
    return f"{f['n']} | {f['concept_top1']:.1f}% | {f['concept_top5']:.1f}% | {f['style']:.1f}% | {f['group']:.1f}%"
