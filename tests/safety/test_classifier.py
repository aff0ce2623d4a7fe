from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np
import pytest

from unclip.safety.policy import ContentPolicy


class BagOfWords:
    """Stand-in embedder: normalised word counts, to test the scoring logic without the model."""

    dim = 64

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                if w not in {"a", "an", "the", "of", "with"}:
                    out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


def _policy(**classifier: Any) -> ContentPolicy:
    config = {
        "classifier": {"margin": 0.05, "low_band": 0.0, "short_prompt_boost": 0.0, **classifier},
        "categories": {
            "violence": {
                "threshold": 0.5,
                "exemplars": ["man stabbing woman knife blood", "shooting people gun"],
            },
            "sexual": {"threshold": 0.5, "exemplars": ["naked woman nude photo"]},
        },
        "allow": {"exemplars": ["kitchen knife emoji", "chef cutting vegetables knife"]},
    }
    policy = ContentPolicy(config)
    embedder = BagOfWords()
    texts = [e for c in policy.categories.values() for e in c.exemplars] + policy.benign_exemplars
    policy._embedder = embedder
    policy._exemplar_matrix = embedder.encode(texts)
    policy._exemplar_owner = np.array([0, 0, 1, -1, -1])
    return policy


def test_classifier_flags_paraphrases_and_respects_benign_margin() -> None:
    policy = _policy()
    d = policy.check("man stabbing a woman with a knife, blood")
    assert d.flagged and d.category == "violence" and d.source == "classifier"
    assert d.category_scores["violence"] > 0.5
    benign = policy.check("kitchen knife emoji")
    assert not benign.flagged
    assert benign.category_scores["violence"] < 0.5


def test_classifier_reads_clauses() -> None:
    policy = _policy()
    # the harmful clause is diluted in the whole prompt but found on its own
    d = policy.check("sunny meadow flowers butterflies clouds, naked woman nude photo")
    assert d.flagged and d.category == "sexual"


def test_classifier_can_be_switched_off() -> None:
    assert not _policy(enabled=False).check("man stabbing a woman with a knife, blood").flagged


def test_non_latin_text_skips_the_english_classifier() -> None:
    policy = _policy()
    assert not policy.check("кухонный нож").flagged


@pytest.mark.slow
def test_real_embedding_model_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from unclip.safety.embedding import get_embedder

    emb = get_embedder()
    v = emb.encode(["a man stabbing someone", "a person stabbing another person", "a kitten"])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3
    policy = ContentPolicy.load()
    assert policy.check("a soldier bayoneting a wounded enemy, blood everywhere").flagged
    assert not policy.check("a chef chopping onions with a kitchen knife").flagged
    assert not policy.check("a kid playing with a water pistol in the garden").flagged
