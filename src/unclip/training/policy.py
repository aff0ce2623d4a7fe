"""`unclip policy train`: fit the content policy's semantic classifier (`unclip.safety.classifier`).

Training rows, all labelled (category or benign):
- the labelled prompt sets in tests/data, except the policy set's `test` part, which is only ever measured
  (and any row whose embedding is within `dedup` cosine of one of its rows is dropped too);
- the exemplar phrases of `policy.yaml`;
- harmless emoji requests in every emojibase locale, from the dataset's own caption templates (emoji are
  benign by policy, the alarming ones included: bomb, pistol, syringe...);
- every labelled row again inside an everyday wrapper ("a sticker of ...", "..., cartoon style", "... emoji").

Obfuscation needs no augmentation: the classifier reads the normalised text (leetspeak, homoglyphs and
spacing undone), as the policy does. The threshold and the rule veto are chosen on the policy set's `tune`
rows, scored by a classifier that never saw the policy set: the most refusals at a false-positive rate of at
most `max_fpr`.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unclip.safety.classifier import PromptClassifier, decide
from unclip.safety.ngrams import ngram_ids
from unclip.safety.normalize import normalize
from unclip.safety.policy import CATEGORIES, ContentPolicy

if TYPE_CHECKING:
    from unclip.training.policy_encoder import EncoderSettings

__all__ = [
    "MLPSettings",
    "NgramSettings",
    "Row",
    "fit_classifier",
    "fit_ngram",
    "fit_softmax",
    "read_rows",
    "train_policy_classifier",
    "training_rows",
]

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
    next to thousands of benign emoji captions) and `fraction` of the rest; English ones in English. With
    every harmless row wrapped too (`fraction` 1), the wrappers say nothing either way."""
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


def clean_texts(texts: list[str]) -> list[str]:
    """Each prompt's normalised text, as the policy reads it."""
    return [normalize(t).clean or t for t in texts]


def features(texts: list[str], embedder: Any) -> np.ndarray:
    """What the network reads: the embedding of each prompt's normalised text (as the policy computes it)."""
    return embedder.encode(clean_texts(texts))


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


@dataclass
class MLPSettings:
    """A ReLU layer and a softmax layer, trained with Adam on mini-batches with input dropout; `members`
    networks from different seeds are averaged (their logits), which is one network `members` times wider."""

    hidden: int = 512
    members: int = 5
    l2: float = 1e-4
    epochs: int = 80
    lr: float = 2e-3
    dropout: float = 0.2
    batch: int = 128


def _fit_member(
    xs: np.ndarray, y: np.ndarray, classes: int, s: MLPSettings, rng: np.random.Generator
) -> list[np.ndarray]:
    d = xs.shape[1]
    params = [
        (rng.standard_normal((d, s.hidden)) * np.sqrt(2 / d)).astype(np.float32),
        np.zeros(s.hidden, np.float32),
        (rng.standard_normal((s.hidden, classes)) * np.sqrt(1 / s.hidden)).astype(np.float32),
        np.zeros(classes, np.float32),
    ]
    m = [np.zeros_like(q) for q in params]
    v = [np.zeros_like(q) for q in params]
    onehot = np.eye(classes, dtype=np.float32)[y]
    t = 0
    for _ in range(s.epochs):
        order = rng.permutation(len(xs))
        for i in range(0, len(xs), s.batch):
            idx = order[i : i + s.batch]
            xb = xs[idx] * (rng.random((len(idx), d)) >= s.dropout) / (1 - s.dropout)
            w1, b1, w2, b2 = params
            h = xb @ w1 + b1
            a = np.maximum(h, 0)
            z = a @ w2 + b2
            z -= z.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            g = (p - onehot[idx]) / len(idx)
            ga = g @ w2.T
            ga[h <= 0] = 0
            grads = (xb.T @ ga + s.l2 * w1, ga.sum(0), a.T @ g + s.l2 * w2, g.sum(0))
            t += 1
            for j, gr in enumerate(grads):
                m[j] = 0.9 * m[j] + 0.1 * gr
                v[j] = 0.999 * v[j] + 0.001 * gr * gr
                params[j] -= s.lr * (m[j] / (1 - 0.9**t)) / (np.sqrt(v[j] / (1 - 0.999**t)) + 1e-8)
    return params


@dataclass
class NgramSettings:
    """The n-gram reader: a softmax layer over `buckets` hashed character n-grams, trained with Adam;
    `share` of the averaged logits (`mix` "logits") or probabilities ("probabilities")."""

    buckets: int = 1 << 18
    epochs: int = 20
    lr: float = 0.02
    batch: int = 256
    share: float = 0.65
    mix: str = "logits"


def fit_ngram(texts: list[str], y: np.ndarray, s: NgramSettings, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(weight [buckets, classes], bias) of the n-gram reader for normalised `texts` and labels `y`."""
    import torch

    ids = [torch.from_numpy(ngram_ids(t, s.buckets)) for t in texts]
    gen = torch.Generator().manual_seed(seed)
    bag = torch.nn.EmbeddingBag(s.buckets, len(CLASSES), mode="sum")
    torch.nn.init.zeros_(bag.weight)
    bias = torch.nn.Parameter(torch.zeros(len(CLASSES)))
    opt = torch.optim.Adam([bag.weight, bias], lr=s.lr)
    labels = torch.as_tensor(y)
    for _ in range(s.epochs):
        order = torch.randperm(len(ids), generator=gen)
        for i in range(0, len(ids), s.batch):
            batch = order[i : i + s.batch].tolist()
            z = _bag_logits(bag, [ids[j] for j in batch]) + bias
            loss = torch.nn.functional.cross_entropy(z, labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return bag.weight.detach().numpy().copy(), bias.detach().numpy().copy()


def _bag_logits(bag: Any, ids: list[Any]) -> Any:
    import torch

    lengths = torch.tensor([max(len(i), 1) for i in ids])
    offsets = torch.tensor([0, *(len(i) for i in ids[:-1])], dtype=torch.long).cumsum(0)
    weights = torch.cat([torch.full((len(i),), 1 / float(n) ** 0.5) for i, n in zip(ids, lengths, strict=True)])
    return bag(torch.cat(ids), offsets, per_sample_weights=weights)  # the classifier's ngram_logits


def fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    settings: MLPSettings | None = None,
    seed: int = 0,
    l2: float = 1e-3,
    texts: list[str] | None = None,
    ngram: NgramSettings | None = None,
) -> PromptClassifier:
    """The classifier for features `x` and labels `y` (indices in CLASSES): the averaged networks of
    `settings`, or a linear softmax layer (with weight decay `l2`) when `settings` is None; with `ngram`, an
    n-gram reader of the normalised `texts` beside it."""
    clf = _fit_network(x, y, settings, seed, l2)
    if ngram is not None and ngram.share > 0:
        assert texts is not None, "the n-gram reader needs the texts"
        clf.ngram_weight, clf.ngram_bias = fit_ngram(texts, y, ngram, seed)
        clf.ngram_share, clf.ngram_mix = ngram.share, ngram.mix
    return clf


def _fit_network(
    x: np.ndarray, y: np.ndarray, settings: MLPSettings | None, seed: int, l2: float
) -> PromptClassifier:
    if settings is None:
        return PromptClassifier(*fit_softmax(x, y, len(CLASSES), l2), CLASSES)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xs = ((x - mean) / scale).astype(np.float32)
    rng = np.random.default_rng(seed)
    members = [_fit_member(xs, y, len(CLASSES), settings, rng) for _ in range(settings.members)]
    k = len(members)
    return PromptClassifier(
        weight=np.concatenate([w2 for _, _, w2, _ in members]) / k,
        bias=sum(b2 for _, _, _, b2 in members) / k,
        mean=mean,
        scale=scale,
        classes=CLASSES,
        hidden_weight=np.concatenate([w1 for w1, _, _, _ in members], axis=1),
        hidden_bias=np.concatenate([b1 for _, b1, _, _ in members]),
    )


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
        for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
            pred = np.array(
                [decide(h, r, a, threshold, veto) for h, r, a in zip(harm, rule, allow_listed, strict=True)]
            )
            recall, fpr = float(pred[blocked].mean()), float(pred[~blocked].mean())
            key = (1.0, recall, threshold, -veto) if fpr <= max_fpr else (0.0, -fpr, recall, threshold)
            if best is None or key > best[0]:
                best = (key, float(threshold), veto, recall, fpr)
    assert best is not None
    return best[1], best[2], best[3], best[4]


def training_rows(
    sets: list[Path],
    policy: ContentPolicy,
    emojibase_dir: Path | None = None,
    emoji_per_locale: int = 40,
    wrap_fraction: float = 1.0,
    seed: int = 0,
) -> tuple[list[Row], list[str]]:
    """What the classifier is fitted on (the sets' rows, exemplars, emoji captions, wrapped copies; see the
    module's docstring) and, apart, the held-out texts (the sets' `test` parts)."""
    rng = random.Random(seed)
    rows: list[Row] = []
    held_out: list[str] = []
    for path in sets:
        got, test = read_rows(path)
        rows += got
        held_out += test
    rows += exemplar_rows(policy)
    if emojibase_dir is not None:
        rows += emoji_rows(emojibase_dir, emoji_per_locale, rng)
    return rows + wrapped_rows(list(rows), wrap_fraction, rng), held_out


def train_policy_classifier(
    sets: list[Path],
    out: Path,
    policy: ContentPolicy | None = None,
    emojibase_dir: Path | None = None,
    emoji_per_locale: int = 40,
    wrap_fraction: float = 1.0,
    settings: MLPSettings | None = None,
    l2: float = 1e-3,
    ngram: NgramSettings | None = None,
    folds: int = 5,
    max_fpr: float = 0.03,
    dedup: float = 0.92,
    seed: int = 0,
    embedder: Any = None,
    encoder: EncoderSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit the classifier on `sets` (plus exemplars, emoji captions and wrappers), save it to `out` and
    return what was measured on rows it had not seen.

    The operating point is chosen on the `tune` rows, scored by a classifier fitted without any row of the
    sets that hold them (nor their wrapped copies, nor any row within `dedup` of a tune row): reworded
    versions of one idea stay in one part of the policy set, so this is what an unseen prompt gets. Without
    `tune` rows, on `folds` out-of-fold predictions. `settings` None fits a linear softmax layer (weight
    decay `l2`); `ngram` adds the n-gram reader. With `encoder` (`EncoderSettings`), the sentence encoder's
    upper layers are first fine-tuned on the rows that classifier is fitted on (so never on a tune row), and
    the classifier reads the tuned encoder, which is saved with it."""
    policy = policy or ContentPolicy.load()
    if embedder is None:
        from unclip.safety.embedding import get_embedder

        embedder = get_embedder()
    rows, held_out = training_rows(sets, policy, emojibase_dir, emoji_per_locale, wrap_fraction, seed)
    x = features([r.text for r in rows], embedder)
    dropped = 0
    if held_out:  # nothing close to a held-out row is trained on
        near = (x @ features(held_out, embedder).T).max(axis=1) >= dedup
        dropped = int(near.sum())
        rows = [r for r, n in zip(rows, near, strict=True) if not n]
        x = x[~near]
    y = np.array([r.label for r in rows])
    texts = clean_texts([r.text for r in rows])

    def fit(idx: np.ndarray) -> PromptClassifier:
        return fit_classifier(x[idx], y[idx], settings, seed, l2, [texts[i] for i in idx], ngram)

    def harm_of(clf: PromptClassifier, idx: np.ndarray) -> np.ndarray:
        return 1.0 - clf.probabilities(x[idx], [texts[i] for i in idx])[:, 0]

    tune = np.array([r.tune for r in rows])
    tuning_sources = {r.source for r in rows if r.tune}
    apart = np.array([r.source.split("+")[0] in tuning_sources for r in rows])
    if tune.any():  # nor anything else that close to a tune row
        apart |= (x @ x[tune].T).max(axis=1) >= dedup
    upper = None
    if encoder is not None:
        from unclip.safety.embedding import Embedder
        from unclip.training.policy_encoder import tune_encoder

        own = np.flatnonzero(~apart)
        upper = tune_encoder([texts[i] for i in own], y[own], len(CLASSES), encoder, seed, log)
        embedder = Embedder(upper=upper)
        x = features([r.text for r in rows], embedder)
    harm = np.zeros(len(rows))
    if tune.any() and len(set(y[~apart])) > 1:
        harm[tune] = harm_of(fit(np.flatnonzero(~apart)), np.flatnonzero(tune))
        protocol = "tune rows, scored by a classifier fitted without their sets"
    else:
        tune[:] = True
        order = np.random.default_rng(seed).permutation(len(rows))
        for k in range(folds):
            test_idx = order[k::folds]
            harm[test_idx] = harm_of(fit(np.setdiff1d(order, test_idx)), test_idx)
        protocol = f"{folds}-fold out-of-fold predictions"
    checks = [policy.rule_check(r.text) for r in rows]
    rule = np.array([c[0] is not None for c in checks])
    allow_listed = np.array([c[1] for c in checks])
    threshold, veto, recall, fpr = choose_operating_point(
        harm[tune], (y > 0)[tune], rule[tune], allow_listed[tune], max_fpr
    )

    clf = fit(np.arange(len(rows)))
    clf.threshold, clf.veto = threshold, veto
    clf.encoder = upper
    clf.meta = {
        "embedder": getattr(embedder, "name", type(embedder).__name__),
        "model": (f"{settings.members} x relu({settings.hidden}) + softmax" if settings else "softmax")
        + (f", with {ngram.share:.0%} n-gram {ngram.mix} ({ngram.buckets} buckets)" if ngram and ngram.share else ""),
        "rows": len(rows),
        "rows_by_source": dict(Counter(r.source for r in rows)),
        "dropped_near_held_out": dropped,
        "max_fpr": max_fpr,
        "operating_point": {
            "chosen_on": protocol,
            "recall": round(recall, 4),
            "fpr": round(fpr, 4),
            "rows": int(tune.sum()),
        },
        "seed": seed,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    clf.save(out)
    return {**clf.meta, "threshold": threshold, "veto": veto, "out": str(out)}
