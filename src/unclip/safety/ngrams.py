"""What the classifier's second reader sees: the hashed character n-grams and words of a normalised prompt.

The sentence embedding knows 16 languages and no slang; character n-grams of the labelled prompts pick up
what it misses (euphemisms, nicknames, words of other languages, spellings), and a linear layer over them
sits beside the network (`PromptClassifier.ngram_weight`)."""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["ORDERS", "ngram_ids"]

ORDERS = (2, 3, 4, 5)


def ngram_ids(text: str, buckets: int) -> np.ndarray:
    """The bucket of each character n-gram (orders ORDERS, across word boundaries) and of each word of the
    lower-cased text, as int64; repeats are kept (they count)."""
    s = f" {' '.join(text.lower().split())} "
    grams = [s[i : i + n] for n in ORDERS for i in range(len(s) - n + 1)]
    grams += [f"w:{w}" for w in s.split()]
    return np.fromiter((zlib.crc32(g.encode()) % buckets for g in grams), dtype=np.int64, count=len(grams))
