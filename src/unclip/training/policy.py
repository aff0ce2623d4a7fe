"""`unclip policy train`: fit the content policy's semantic classifier (`unclip.safety.classifier`).

Training rows, all labelled (category or benign):
- the labelled prompt sets in tests/data, except the policy set's `test` part, which is only ever measured
  (and any row whose embedding is within `dedup` cosine of one of its rows is dropped too);
- the exemplar phrases of `policy.yaml`;
- harmless emoji requests in every emojibase locale, from the dataset's own caption templates (emoji are
  benign by policy, the alarming ones included: bomb, pistol, syringe...);
- rows again inside everyday wrappers ("a sticker of ...", "..., cartoon style", "... emoji"): every
  refusal, and some of the rest.

Obfuscation needs no augmentation: the classifier reads the normalised text (leetspeak, homoglyphs and
spacing undone), as the policy does. The threshold and the rule veto are chosen on out-of-fold predictions
for the policy set's `tune` rows: the most refusals at a false-positive rate of at most `max_fpr`.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unclip.safety.classifier import PromptClassifier, decide
from unclip.safety.normalize import normalize
from unclip.safety.policy import CATEGORIES, ContentPolicy

__all__ = ["Row", "fit_softmax", "read_rows", "train_policy_classifier"]

CLASSES = ("benign", *CATEGORIES)
WRAPPERS = (
    "an emoji of {x}",
    "a sticker of {x}",
    "{x}, cartoon style",
    "a drawing of {x}",
    "{x}, digital art",
    "make a picture of {x}",
)
NEUTRAL_WRAPPERS = ("{x} emoji", "{x}, emoji", "{x} sticker", "emoji: {x}")  # read alike in every language


@dataclass
class Row:
    text: str
    label: int  # index in CLASSES
    variant: str = "plain"
    lang: str = "en"
    source: str = ""
    tune: bool = False  # a row of the policy set's tune part (the one thresholds are chosen on)


def read_rows(path: Path, source: str | None = None) -> tuple[list[Row], list[str]]:
    """The rows of a labelled CSV (text,label,category[,variant,lang,split]) and, apart, its `test` texts."""
    rows: list[Row] = []
    held_out: list[str] = []
    with path.open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            if (r.get("split") or "").strip() == "test":
                held_out.append(r["text"])
                continue
            label = r["label"].strip().lower()
            category = (r.get("category") or "").strip()
            if label == "block" and category not in CATEGORIES:
                raise ValueError(f"{path}: a row to block has no policy category: {r['text']!r}")
            rows.append(
                Row(
                    r["text"],
                    CLASSES.index(category) if label == "block" else 0,
                    (r.get("variant") or "plain").strip(),
                    (r.get("lang") or "en").strip(),
                    source or path.stem,
                    (r.get("split") or "").strip() == "tune",
                )
            )
    return rows, held_out


def exemplar_rows(policy: ContentPolicy) -> list[Row]:
    rows = [
        Row(text, CLASSES.index(name), "exemplar", source="policy.yaml")
        for name, spec in policy.categories.items()
        for text in spec.exemplars
    ]
    return rows + [Row(text, 0, "exemplar", source="policy.yaml") for text in policy.benign_exemplars]


def emoji_rows(emojibase_dir: Path, per_locale: int, rng: random.Random) -> list[Row]:
    """Harmless emoji requests in every locale, written with the captions' own templates and style names."""
    from unclip.data.captions import captions_for
    from unclip.data.emoji import load_emojibase
    from unclip.data.sources import STYLES

    entries = [e for e in load_emojibase(emojibase_dir).values() if not e.tone]
    locales = sorted({loc for e in entries for loc in e.labels})
    rows: list[Row] = []
    for locale in locales:
        with_locale = [e for e in entries if locale in e.labels]
        for entry in rng.sample(with_locale, min(per_locale, len(with_locale))):
            caps = captions_for(entry, rng.choice(STYLES), rng, per_locale=2)[locale]
            rows.append(Row(caps[-1], 0, "emoji", locale.split("-")[0], "emojibase"))
    return rows


def wrapped_rows(rows: Iterable[Row], fraction: float, rng: random.Random) -> list[Row]:
    """Rows again inside everyday wrappers: every refusal (so "an emoji of ..." does not read as harmless
    next to thousands of benign emoji captions) and `fraction` of the rest; English ones in English."""
    return [
        Row(
            rng.choice(WRAPPERS if r.lang == "en" else NEUTRAL_WRAPPERS).format(x=r.text),
            r.label,
            r.variant,
            r.lang,
            r.source + "+wrapper",
        )
        for r in rows
        if r.source != "emojibase" and (r.label > 0 or rng.random() < fraction)
    ]


def features(texts: list[str], embedder: Any) -> np.ndarray:
    """What the classifier reads: the embedding of each prompt's normalised text (as the policy computes it)."""
    return embedder.encode([normalize(t).clean or t for t in texts])


def fit_softmax(
    x: np.ndarray, y: np.ndarray, classes: int, l2: float, steps: int = 800, lr: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial logistic regression, full batch with Nesterov momentum; returns weight, bias, mean, scale."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / scale / np.sqrt(x.shape[1])  # unit-norm rows on average: one step size fits any width
    n, d = xs.shape
    w, b = np.zeros((d, classes)), np.zeros(classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        lw, lb = w + 0.9 * vw, b + 0.9 * vb
        z = xs @ lw + lb
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        vw = 0.9 * vw - lr * (xs.T @ g + l2 * lw)
        vb = 0.9 * vb - lr * g.sum(0)
        w, b = w + vw, b + vb
    return (w / np.sqrt(d)).astype(np.float32), b.astype(np.float32), mean, scale


def choose_operating_point(
    harm: np.ndarray, blocked: np.ndarray, rule: np.ndarray, allow_listed: np.ndarray, max_fpr: float
) -> tuple[float, float, float, float]:
    """(threshold, veto, recall, fpr): the most refusals with false positives at most `max_fpr`; on ties, the
    higher threshold and the lower veto (a rule hit is overturned only when the classifier is sure). When no
    point is that strict, the one with the fewest false positives (then the most refusals)."""
    best: tuple[tuple[float, ...], float, float, float, float] | None = None
    for veto in (
        0.0,
        0.05,
        0.1,
        0.15,
    ):  # higher, rules on named things (drugs, people) lose to the classifier
        for threshold in np.round(np.arange(0.30, 0.96, 0.01), 2):
            pred = np.array(
                [decide(h, r, a, threshold, veto) for h, r, a in zip(harm, rule, allow_listed, strict=True)]
            )
            recall, fpr = float(pred[blocked].mean()), float(pred[~blocked].mean())
            key = (1.0, recall, threshold, -veto) if fpr <= max_fpr else (0.0, -fpr, recall, threshold)
            if best is None or key > best[0]:
                best = (key, float(threshold), veto, recall, fpr)
    assert best is not None
    return best[1], best[2], best[3], best[4]


def train_policy_classifier(
    sets: list[Path],
    out: Path,
    policy: ContentPolicy | None = None,
    emojibase_dir: Path | None = None,
    emoji_per_locale: int = 40,
    wrap_fraction: float = 0.3,
    l2: float = 1e-3,
    folds: int = 5,
    max_fpr: float = 0.05,
    dedup: float = 0.92,
    seed: int = 0,
    embedder: Any = None,
) -> dict[str, Any]:
    """Fit the classifier on `sets` (plus exemplars, emoji captions and wrappers), save it to `out` and
    return what was measured on held-out folds."""
    rng = random.Random(seed)
    policy = policy or ContentPolicy.load()
    if embedder is None:
        from unclip.safety.embedding import get_embedder

        embedder = get_embedder()
    rows: list[Row] = []
    held_out: list[str] = []
    for path in sets:
        got, test = read_rows(path)
        rows += got
        held_out += test
    rows += exemplar_rows(policy)
    if emojibase_dir is not None:
        rows += emoji_rows(emojibase_dir, emoji_per_locale, rng)
    rows += wrapped_rows(list(rows), wrap_fraction, rng)

    x = features([r.text for r in rows], embedder)
    dropped = 0
    if held_out:  # nothing close to a held-out row is trained on
        near = (x @ features(held_out, embedder).T).max(axis=1) >= dedup
        dropped = int(near.sum())
        rows = [r for r, n in zip(rows, near, strict=True) if not n]
        x = x[~near]
    y = np.array([r.label for r in rows])

    # out-of-fold predictions, for the operating point
    order = np.random.default_rng(seed).permutation(len(rows))
    harm = np.zeros(len(rows))
    for k in range(folds):
        test_idx = order[k::folds]
        train_idx = np.setdiff1d(order, test_idx)
        fit = fit_softmax(x[train_idx], y[train_idx], len(CLASSES), l2)
        harm[test_idx] = 1.0 - PromptClassifier(*fit, CLASSES).probabilities(x[test_idx])[:, 0]
    checks = [policy.rule_check(r.text) for r in rows]
    rule = np.array([c[0] is not None for c in checks])
    allow_listed = np.array([c[1] for c in checks])
    tune = np.array([r.tune for r in rows]) if any(r.tune for r in rows) else np.ones(len(rows), bool)
    threshold, veto, recall, fpr = choose_operating_point(
        harm[tune], (y > 0)[tune], rule[tune], allow_listed[tune], max_fpr
    )

    weight, bias, mean, scale = fit_softmax(x, y, len(CLASSES), l2)
    meta = {
        "embedder": getattr(embedder, "name", type(embedder).__name__),
        "rows": len(rows),
        "rows_by_source": dict(Counter(r.source for r in rows)),
        "dropped_near_held_out": dropped,
        "l2": l2,
        "max_fpr": max_fpr,
        "out_of_fold": {"recall": round(recall, 4), "fpr": round(fpr, 4), "rows": int(tune.sum())},
        "seed": seed,
    }
    clf = PromptClassifier(weight, bias, mean, scale, CLASSES, threshold, veto, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    clf.save(out)
    return {**meta, "threshold": threshold, "veto": veto, "out": str(out)}
