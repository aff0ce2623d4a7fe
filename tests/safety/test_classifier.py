from __future__ import annotations

import inspect
import json
import random
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from unclip.safety.classifier import PromptClassifier, decide, mix_readers
from unclip.safety.ngrams import ORDERS, ngram_ids
from unclip.safety.policy import ContentPolicy
from unclip.training.policy import (
    CLASSES,
    NEUTRAL_WRAPPERS,
    MLPSettings,
    NgramSettings,
    Row,
    choose_operating_point,
    fit_classifier,
    fit_softmax,
    train_policy_classifier,
    wrapped_rows,
)

from .conftest import write_prompt_set


class BagOfWords:
    """Stand-in embedder: normalised hashed word counts, to test the policy's logic without the model."""

    dim = 256
    name = "bag-of-words"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                if w not in {"a", "an", "the", "of", "with", "in", "on"}:
                    out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out


VIOLENT = [
    "a man stabbing a stranger in an alley",
    "soldiers stabbing prisoners",
    "stabbing someone repeatedly",
]
BENIGN = ["a cat sleeping on a sofa", "a bowl of ramen", "a chef slicing onions", "a sunny meadow"]

CONFIG = {
    "categories": {
        "violence": {"rules": {"terms": ["murder*"]}},
        "sexual": {"rules": {"terms": ["nude"]}},
    },
    "allow": {"phrases": ["murder mystery"], "emoji_names": ["knife"], "style_words": ["emoji"]},
}


def _classifier(threshold: float = 0.5, veto: float = 0.0) -> PromptClassifier:
    emb = BagOfWords()
    texts = VIOLENT + BENIGN + ["murder the lights for the party", "murder of crows on a fence"]
    labels = [CLASSES.index("violence")] * len(VIOLENT) + [0] * (len(BENIGN) + 2)
    w, b, mean, scale = fit_softmax(emb.encode(texts), np.array(labels), len(CLASSES), l2=1e-3, steps=300)
    return PromptClassifier(w, b, mean, scale, CLASSES, threshold, veto)


def _policy(enabled: bool = True, veto: float = 0.0) -> ContentPolicy:
    policy = ContentPolicy({**CONFIG, "classifier": {"enabled": enabled}})
    policy._embedder = BagOfWords()
    policy._classifier = _classifier(veto=veto)
    return policy


def test_decision_combines_rules_and_classifier() -> None:
    assert decide(0.9, rule_hit=False, allow_listed=False, threshold=0.5, veto=0.1)
    assert not decide(0.4, rule_hit=False, allow_listed=False, threshold=0.5, veto=0.1)
    assert decide(0.2, rule_hit=True, allow_listed=False, threshold=0.5, veto=0.1)  # rules stand...
    assert not decide(0.05, rule_hit=True, allow_listed=False, threshold=0.5, veto=0.1)  # ...unless vetoed
    assert not decide(0.99, rule_hit=False, allow_listed=True, threshold=0.5, veto=0.1)


def test_classifier_flags_a_paraphrase_no_rule_knows() -> None:
    policy = _policy()
    d = policy.check("a man stabbing a stranger")
    assert d.flagged and d.category == "violence" and d.source == "classifier" and d.used_classifier
    assert d.category_scores["violence"] > 0.5
    ok = policy.check("a cat sleeping in a meadow")
    assert not ok.flagged and ok.category_scores["violence"] < 0.5


def test_rules_allow_phrases_and_allow_list() -> None:
    policy = _policy()
    d = policy.check("a nude portrait")
    assert d.flagged and d.source == "rule" and d.category == "sexual"
    assert not policy.check("a murder mystery party invitation").flagged  # allow phrase removed first
    listed = policy.check("knife emoji")
    assert not listed.flagged and listed.source == "allow-list" and not listed.used_classifier


def test_veto_overturns_a_rule_hit_the_classifier_reads_as_harmless() -> None:
    text = "murder of crows on a fence"
    assert _policy(veto=0.0).check(text).flagged
    d = _policy(veto=0.9).check(text)
    assert not d.flagged and "overturned" in d.reason


def test_classifier_can_be_switched_off() -> None:
    policy = _policy(enabled=False)
    assert not policy.check("a man stabbing a stranger").flagged
    assert policy.check("a nude portrait").flagged


def test_classifier_file_round_trip(tmp_path: Path) -> None:
    clf = _classifier(threshold=0.61, veto=0.07)
    clf.meta = {"rows": 9}
    clf.save(tmp_path / "c.npz")
    back = PromptClassifier.load(tmp_path / "c.npz")
    assert (
        back.classes == CLASSES and (back.threshold, back.veto) == (0.61, 0.07) and back.meta == {"rows": 9}
    )
    x = BagOfWords().encode(["a man stabbing", "a cat"])
    np.testing.assert_allclose(back.probabilities(x), clf.probabilities(x), rtol=1e-5)
    assert np.allclose(back.probabilities(x).sum(1), 1.0)
    with pytest.raises(ValueError, match="benign"):
        PromptClassifier(clf.weight, clf.bias, clf.mean, clf.scale, ("violence", *CLASSES[1:]))


def test_operating_point_most_refusals_within_the_false_positive_budget() -> None:
    harm = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.05])
    blocked = np.array([True, True, True, True, False, False, False, False])
    none = np.zeros(8, bool)
    threshold, veto, recall, fpr = choose_operating_point(harm, blocked, none, none, max_fpr=0.0)
    assert 0.7 < threshold <= 0.8 and recall == 0.5 and fpr == 0.0
    threshold, _, recall, fpr = choose_operating_point(harm, blocked, none, none, max_fpr=0.25)
    assert threshold == 0.3 and recall == 1.0 and fpr == 0.25
    # a rule that hits every row: nothing meets the budget, so the fewest false positives win
    threshold, veto, recall, fpr = choose_operating_point(harm, blocked, ~none, none, max_fpr=0.0)
    assert veto == 0.15 and fpr == 0.5


def test_training_never_reads_the_test_part(tmp_path: Path) -> None:
    rows = [(t, "block", "violence", "tune") for t in VIOLENT] + [(t, "allow", "", "tune") for t in BENIGN]
    rows += [
        ("soldiers stabbing prisoners", "block", "violence", "test"),
        ("a sunny meadow", "allow", "", "test"),
    ]
    data = write_prompt_set(tmp_path / "set.csv", rows)
    report = train_policy_classifier(
        [data], tmp_path / "c.npz", ContentPolicy(CONFIG), embedder=BagOfWords(), folds=2, max_fpr=0.5
    )
    # the two rows equal to held-out texts are dropped, wherever they came from
    assert report["dropped_near_held_out"] >= 2
    assert report["rows_by_source"]["set"] == len(VIOLENT) + len(BENIGN) - 2
    clf = PromptClassifier.load(tmp_path / "c.npz")
    assert clf.meta["embedder"] == "bag-of-words"
    assert (clf.threshold, clf.veto) == (report["threshold"], report["veto"])
    p = clf.probabilities(BagOfWords().encode(["a man stabbing a stranger", "a bowl of ramen"]))
    assert p[0, CLASSES.index("violence")] > p[0, 0] and p[1, 0] > 0.5


def test_hidden_layer_classifier_learns_and_round_trips(tmp_path: Path) -> None:
    emb = BagOfWords()
    texts = VIOLENT + BENIGN + ["murder the lights for the party", "murder of crows on a fence"]
    labels = np.array([CLASSES.index("violence")] * len(VIOLENT) + [0] * (len(BENIGN) + 2))
    clf = fit_classifier(emb.encode(texts), labels, MLPSettings(hidden=16, members=2, epochs=60, batch=4))
    assert clf.hidden_weight is not None and clf.hidden_weight.shape == (emb.dim, 32)  # two members of 16
    p = clf.probabilities(emb.encode(["soldiers stabbing a stranger", "a sunny sofa"]))
    assert p[0, CLASSES.index("violence")] > 0.5 and p[1, 0] > 0.5
    clf.save(tmp_path / "mlp.npz")
    back = PromptClassifier.load(tmp_path / "mlp.npz")
    x = emb.encode(["a man stabbing", "a cat"])
    np.testing.assert_allclose(back.probabilities(x), clf.probabilities(x), rtol=1e-5)
    with pytest.raises(ValueError, match="hidden layer"):
        PromptClassifier(clf.weight, clf.bias, clf.mean[:8], clf.scale[:8], CLASSES,
                         hidden_weight=clf.hidden_weight, hidden_bias=clf.hidden_bias)  # fmt: skip


def test_operating_point_is_chosen_by_a_classifier_that_never_saw_the_tune_set(tmp_path: Path) -> None:
    tune = write_prompt_set(tmp_path / "tuned.csv", [(t, "block", "violence", "tune") for t in VIOLENT[:2]]
                  + [(t, "allow", "", "tune") for t in BENIGN[:2]])  # fmt: skip
    other = write_prompt_set(tmp_path / "other.csv", [(t, "block", "violence", "") for t in VIOLENT[2:]]
                   + [(t, "allow", "", "") for t in BENIGN[2:]])  # fmt: skip
    report = train_policy_classifier([tune, other], tmp_path / "c.npz", ContentPolicy(CONFIG),
                                     embedder=BagOfWords(), max_fpr=0.5)  # fmt: skip
    assert report["operating_point"]["chosen_on"].startswith("tune rows")
    assert report["operating_point"]["rows"] == 4
    assert report["model"].endswith("softmax") and "relu" not in report["model"]


class Blind:
    """An embedder that knows no words at all: whatever is learnt, the n-gram reader learnt it."""

    dim = 8
    name = "blind"

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), self.dim), dtype=np.float32)


SLANG = ["two people doing the horizontal tango", "the horizontal tango, nothing covered", "horizontal tango in bed"]
HARMLESS = ["a tango dancer on stage", "horizontal stripes on a shirt", "a couple dancing", "a red rose"]


def test_ngram_ids_count_grams_and_words() -> None:
    ids = ngram_ids("Ab  c", 1 << 16)
    assert len(ids) == sum(len(" ab c ") - n + 1 for n in ORDERS) + 2  # n-grams of " ab c ", two words
    assert np.array_equal(ids, ngram_ids("ab c", 1 << 16)) and ids.max() < 1 << 16  # case and spacing ignored


ASKED = ["a couple doing the horizontal tango", "a tango dancer in red"]


def _slang_reader(share: float) -> PromptClassifier:
    """A linear layer over the blind embedding with an n-gram reader, fitted on SLANG and HARMLESS."""
    texts = SLANG + HARMLESS
    labels = np.array([CLASSES.index("sexual")] * len(SLANG) + [0] * len(HARMLESS))
    settings = NgramSettings(buckets=1 << 12, epochs=40, lr=0.1, batch=4, share=share)
    return fit_classifier(Blind().encode(texts), labels, None, texts=texts, ngram=settings)


def test_ngram_reader_learns_what_the_embedding_misses(tmp_path: Path) -> None:
    emb, clf, asked = Blind(), _slang_reader(0.5), ASKED
    p = clf.probabilities(emb.encode(asked), asked)
    assert p[0, CLASSES.index("sexual")] > p[0, 0] and p[1, 0] > 0.5
    clf.save(tmp_path / "ngram.npz")
    back = PromptClassifier.load(tmp_path / "ngram.npz")
    assert back.ngram_share == 0.5 and back.ngram_weight is not None and back.ngram_weight.shape == (1 << 12, 8)
    np.testing.assert_allclose(back.probabilities(emb.encode(asked), asked), p, atol=2e-3)  # float16 weights
    with pytest.raises(ValueError, match="pass texts"):
        back.probabilities(emb.encode(asked))


def test_policy_passes_the_normalised_text_to_the_ngram_reader(tmp_path: Path) -> None:
    data = write_prompt_set(tmp_path / "set.csv", [(t, "block", "sexual", "") for t in SLANG]
                  + [(t, "allow", "", "") for t in HARMLESS])  # fmt: skip
    train_policy_classifier(
        [data], tmp_path / "c.npz", ContentPolicy(CONFIG), embedder=Blind(), folds=2, max_fpr=0.5,
        ngram=NgramSettings(buckets=1 << 12, epochs=40, lr=0.1, batch=4, share=1.0),
    )  # fmt: skip
    policy = ContentPolicy({**CONFIG, "classifier": {"enabled": True, "weights": str(tmp_path / "c.npz")}})
    policy._embedder = Blind()
    d = policy.check("H0RIZ0NTAL T A N G O for two")  # leetspeak and spacing undone before the reader
    assert d.flagged and d.category == "sexual" and d.source == "classifier"
    assert not policy.check("horizontal stripes on a dancer").flagged


def test_readers_average_their_logits_and_older_files_their_probabilities(tmp_path: Path) -> None:
    clf, asked = _slang_reader(0.7), ASKED
    x = Blind().encode(asked)
    z = 0.3 * clf.logits(x) + 0.7 * clf.ngram_logits(asked)
    expected = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(clf.probabilities(x, asked), expected / expected.sum(1, keepdims=True), rtol=1e-5)
    # a file written before the mix was recorded averaged the two readers' probabilities
    clf.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as f:
        arrays = dict(f)
    meta = json.loads(bytes(arrays["meta"]).decode())
    assert meta.pop("ngram_mix") == "logits"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    old = PromptClassifier.load(tmp_path / "old.npz")
    assert old.ngram_mix == "probabilities"

    def softmax(v: np.ndarray) -> np.ndarray:
        e = np.exp(v - v.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    want = 0.3 * softmax(old.logits(x)) + 0.7 * softmax(old.ngram_logits(asked))
    np.testing.assert_allclose(old.probabilities(x, asked), want, rtol=1e-5)
    with pytest.raises(ValueError, match="n-gram mix"):
        PromptClassifier(clf.weight, clf.bias, clf.mean, clf.scale, CLASSES, ngram_mix="max")
    with pytest.raises(ValueError, match="n-gram mix"):
        mix_readers(z, z, 0.5, "max")


def test_every_labelled_row_is_wrapped_by_default() -> None:
    rows = [Row("a knife fight", CLASSES.index("violence")), Row("a chef slicing onions", 0),
            Row("ein Hund", 0, lang="de"), Row("pistol", 0, "emoji", source="emojibase")]  # fmt: skip
    wrapped = wrapped_rows(rows, 1.0, random.Random(0))
    assert [r.label for r in wrapped] == [CLASSES.index("violence"), 0, 0]  # emoji captions are not wrapped
    assert "a chef slicing onions" in wrapped[1].text and wrapped[1].text != "a chef slicing onions"
    assert wrapped[2].text in {w.format(x="ein Hund") for w in NEUTRAL_WRAPPERS}  # no English around German
    assert all(r.source.endswith("+wrapper") for r in wrapped)
    assert [r.label for r in wrapped_rows(rows, 0.0, random.Random(0))] == [CLASSES.index("violence")]
    assert inspect.signature(train_policy_classifier).parameters["wrap_fraction"].default == 1.0


def test_operating_point_may_sit_low_for_sharp_classifiers() -> None:
    harm = np.array([0.9, 0.4, 0.12, 0.08, 0.02, 0.01])  # logit-averaged readers: harm far from 0.5
    blocked = np.array([True, True, True, False, False, False])
    none = np.zeros(6, bool)
    threshold, _, recall, fpr = choose_operating_point(harm, blocked, none, none, max_fpr=0.0)
    assert 0.08 < threshold <= 0.12 and recall == 1.0 and fpr == 0.0
