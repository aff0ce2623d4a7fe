"""The content policy's semantic classifier: a small network over multilingual sentence embeddings.

    clf = PromptClassifier.load()                 # the weights shipped in this package, or a path
    probs = clf.probabilities(embeddings, texts)  # (n, len(clf.classes)); classes[0] is "benign"

It reads the embedding of a normalised prompt (`unclip.safety.embedding`, 16 languages in one space) and
says how likely each policy category is, against "benign": a ReLU layer, then a softmax layer (or the softmax
layer alone, for weights without a hidden layer). Weights may add a second reader, a softmax layer over the
prompt's hashed character n-grams (`unclip.safety.ngrams`), given the text (`probabilities(embeddings,
texts)`): the two readers' logits are averaged (`ngram_share` of the n-gram reader's; a product of the two
experts), or, in files written before that, their probabilities.
`unclip policy train` fits it on the labelled prompt sets (never on the policy set's `test` part) and writes
the file with the threshold and veto it chose on rows the classifier that scored them had not seen;
`policy.yaml` may override both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from unclip.safety.ngrams import ngram_ids

__all__ = ["PromptClassifier", "decide", "default_weights_path"]


def default_weights_path() -> Path:
    return Path(str(resources.files("unclip.safety").joinpath("prompt_classifier.npz")))


def decide(harm: float, rule_hit: bool, allow_listed: bool, threshold: float, veto: float) -> bool:
    """The policy's decision from the classifier's harm probability (1 - P(benign)) and the rules.

    A rule hit refuses unless the classifier is all but sure the prompt is harmless (below `veto`); a
    prompt made only of allow-listed emoji names passes; otherwise the classifier decides at `threshold`."""
    if rule_hit:
        return harm >= veto
    return not allow_listed and harm >= threshold


@dataclass
class PromptClassifier:
    weight: np.ndarray  # (hidden units, or features without a hidden layer; classes)
    bias: np.ndarray  # (classes,)
    mean: np.ndarray  # feature standardisation, fitted on the training rows
    scale: np.ndarray
    classes: tuple[str, ...]
    #: flag a prompt when 1 - P(benign) reaches this
    threshold: float = 0.5
    #: a rule hit stands unless 1 - P(benign) is below this (harmless look-alikes: "suicide doors")
    veto: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    #: (features, hidden) and (hidden,): the ReLU layer before the softmax layer; None for a linear classifier
    hidden_weight: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    #: (buckets, classes) and (classes,): the n-gram reader; None without one
    ngram_weight: np.ndarray | None = None
    ngram_bias: np.ndarray | None = None
    #: the n-gram reader's share of the averaged logits ("logits") or probabilities ("probabilities")
    ngram_share: float = 0.0
    ngram_mix: str = "logits"
    #: the sentence encoder's fine-tuned upper layers the network reads (`unclip.safety.embedding`); None:
    #: the released encoder
    encoder: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.classes[0] != "benign":
            raise ValueError("the first class must be 'benign'")
        inputs = self.mean.shape[0]
        if self.hidden_weight is not None:
            if self.hidden_bias is None or self.hidden_weight.shape != (inputs, self.hidden_bias.shape[0]):
                raise ValueError(f"hidden layer {self.hidden_weight.shape} does not fit {inputs} features")
            inputs = self.hidden_weight.shape[1]
        if self.weight.shape != (inputs, len(self.classes)):
            raise ValueError(f"weight shape {self.weight.shape} does not fit {len(self.classes)} classes")
        _check_mix(self.ngram_mix)
        if self.ngram_weight is not None and (
            self.ngram_bias is None or self.ngram_weight.shape[1:] != (len(self.classes),)
        ):
            raise ValueError(f"n-gram weight shape {self.ngram_weight.shape} does not fit {len(self.classes)} classes")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        h = (features - self.mean) / self.scale
        if self.hidden_weight is not None:
            h = np.maximum(h @ self.hidden_weight + self.hidden_bias, 0.0)
        return h @ self.weight + self.bias

    def ngram_logits(self, texts: list[str]) -> np.ndarray:
        assert self.ngram_weight is not None and self.ngram_bias is not None
        rows = []
        for text in texts:
            ids = ngram_ids(text, self.ngram_weight.shape[0])
            rows.append(self.ngram_weight[ids].sum(0, dtype=np.float32) / np.sqrt(max(len(ids), 1)))
        return np.stack(rows) + self.ngram_bias

    def probabilities(self, features: np.ndarray, texts: list[str] | None = None) -> np.ndarray:
        """Each category's probability for each prompt, from its embedding and (with an n-gram reader) its
        normalised text."""
        z = self.logits(np.asarray(features, dtype=np.float32))
        if self.ngram_weight is None or not self.ngram_share:
            return _softmax(z)
        if texts is None:
            raise ValueError("this classifier also reads the prompts' text: pass texts")
        return mix_readers(z, self.ngram_logits(texts), self.ngram_share, self.ngram_mix)

    def save(self, path: str | Path) -> None:
        meta = {**self.meta, "classes": list(self.classes), "threshold": self.threshold, "veto": self.veto}
        meta |= {"ngram_share": self.ngram_share, "ngram_mix": self.ngram_mix}
        arrays = {"weight": self.weight, "bias": self.bias, "mean": self.mean, "scale": self.scale}
        if self.hidden_weight is not None:
            arrays |= {"hidden_weight": self.hidden_weight, "hidden_bias": self.hidden_bias}
        if self.ngram_weight is not None:
            arrays |= {"ngram_bias": self.ngram_bias}
        with Path(path).open("wb") as f:
            np.savez_compressed(
                f,
                **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()},
                # float16 halves the file; unused buckets stay exactly zero and compress away
                **({"ngram_weight": self.ngram_weight.astype(np.float16)} if self.ngram_weight is not None else {}),
                **{f"encoder.{k}": np.asarray(v, dtype=np.float16) for k, v in (self.encoder or {}).items()},
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptClassifier:
        p = Path(path) if path is not None else default_weights_path()
        with np.load(p, allow_pickle=False) as f:
            meta = json.loads(bytes(f["meta"]).decode())
            return cls(
                weight=f["weight"],
                bias=f["bias"],
                mean=f["mean"],
                scale=f["scale"],
                classes=tuple(meta.pop("classes")),
                threshold=float(meta.pop("threshold")),
                veto=float(meta.pop("veto")),
                meta=meta,
                hidden_weight=f.get("hidden_weight"),
                hidden_bias=f.get("hidden_bias"),
                ngram_weight=None if "ngram_weight" not in f else f["ngram_weight"].astype(np.float32),
                ngram_bias=f.get("ngram_bias"),
                ngram_share=float(meta.pop("ngram_share", 0.0)),
                ngram_mix=meta.pop("ngram_mix", "probabilities"),
                encoder={k.split(".", 1)[1]: f[k].astype(np.float32) for k in f.files if k.startswith("encoder.")}
                or None,
            )


def mix_readers(net_logits: np.ndarray, ngram_logits: np.ndarray, share: float, mix: str) -> np.ndarray:
    """The two readers' category probabilities: a softmax of their logits averaged ("logits", a product of
    experts) or their probabilities averaged ("probabilities"), `share` of the n-gram reader's."""
    _check_mix(mix)
    if mix == "logits":
        return _softmax((1 - share) * net_logits + share * ngram_logits)
    return (1 - share) * _softmax(net_logits) + share * _softmax(ngram_logits)


def _check_mix(mix: str) -> None:
    if mix not in ("logits", "probabilities"):
        raise ValueError(f"unknown n-gram mix {mix!r}: 'logits' or 'probabilities'")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
