"""The content policy's semantic classifier: a softmax layer over multilingual sentence embeddings.

    clf = PromptClassifier.load()                 # the weights shipped in this package, or a path
    probs = clf.probabilities(embeddings)         # (n, len(clf.classes)); classes[0] is "benign"

It reads the embedding of a normalised prompt (`unclip.safety.embedding`, 16 languages in one space) and
says how likely each policy category is, against "benign". `unclip policy train` fits it on the labelled
prompt sets (never on the policy set's `test` part) and writes the file with the threshold and veto it chose
on held-out folds; `policy.yaml` may override both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

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
    weight: np.ndarray  # (features, classes)
    bias: np.ndarray  # (classes,)
    mean: np.ndarray  # feature standardisation, fitted on the training rows
    scale: np.ndarray
    classes: tuple[str, ...]
    #: flag a prompt when 1 - P(benign) reaches this
    threshold: float = 0.5
    #: a rule hit stands unless 1 - P(benign) is below this (harmless look-alikes: "suicide doors")
    veto: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.classes[0] != "benign":
            raise ValueError("the first class must be 'benign'")
        if self.weight.shape != (self.mean.shape[0], len(self.classes)):
            raise ValueError(f"weight shape {self.weight.shape} does not fit {len(self.classes)} classes")

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        z = self.logits(np.asarray(features, dtype=np.float32))
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> None:
        meta = {**self.meta, "classes": list(self.classes), "threshold": self.threshold, "veto": self.veto}
        with Path(path).open("wb") as f:
            np.savez_compressed(
                f,
                weight=self.weight.astype(np.float32),
                bias=self.bias.astype(np.float32),
                mean=self.mean.astype(np.float32),
                scale=self.scale.astype(np.float32),
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
            )
