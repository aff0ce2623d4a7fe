"""The labelled prompt set the semantic policy is tuned on (split `tune`) and measured on (split `test`)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

SET = Path(__file__).resolve().parents[1] / "data" / "policy_set.csv"
BLOCK = {"sexual", "violence", "hate", "self-harm", "illicit", "political", "real-people"}


def _rows() -> list[dict[str, str]]:
    with SET.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_shape_and_mix() -> None:
    rows = _rows()
    assert len(rows) >= 800 and {r["split"] for r in rows} == {"tune", "test"}
    block = [r for r in rows if r["label"] == "block"]
    allow = [r for r in rows if r["label"] == "allow"]
    assert {r["category"] for r in block} == BLOCK and {r["label"] for r in rows} == {"block", "allow"}
    assert sum(r["variant"] in ("paraphrase", "euphemism") for r in block) >= len(block) / 3
    assert sum(r["category"] == "lookalike" for r in allow) >= 150
    langs = Counter(r["lang"] for r in rows)
    assert sum(n >= 10 for n in langs.values()) >= 15
    for lang in langs:  # every language has refusals and allowed prompts in both parts
        for split in ("tune", "test"):
            part = [r for r in rows if r["lang"] == lang and r["split"] == split]
            assert {r["label"] for r in part} == {"block", "allow"}, (lang, split)
    # each (label, category, variant, language) cell is split about evenly
    cells: dict[tuple, Counter] = {}
    for r in rows:
        cells.setdefault((r["label"], r["category"], r["variant"], r["lang"]), Counter())[r["split"]] += 1
    assert all(abs(c["tune"] - c["test"]) <= 1 for c in cells.values())


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_no_row_is_in_both_splits_or_in_the_independent_set() -> None:
    rows = _rows()
    tune = {norm(r["text"]) for r in rows if r["split"] == "tune"}
    test = {norm(r["text"]) for r in rows if r["split"] == "test"}
    assert not tune & test
    with (SET.parent / "safety_prompts_fresh.csv").open(encoding="utf-8", newline="") as f:
        fresh = {norm(r["text"]) for r in csv.DictReader(f)}
    assert not (tune | test) & fresh


def test_training_rows_are_not_measured_rows() -> None:
    """The policy_train*.csv sets (trained on by `unclip policy train`) share no prompt with the policy set's
    test part or the independent set, and label every refusal with a policy category."""
    train = []
    for name in ("policy_train.csv", "policy_train_2.csv", "policy_train_3.csv", "policy_train_4.csv",
                 "policy_train_5.csv", "policy_train_6.csv"):
        with (SET.parent / name).open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["category"] for r in rows if r["label"] == "block"} == BLOCK, name
        assert {r["label"] for r in rows} == {"block", "allow"}, name
        train += rows
    assert len(train) >= 2400
    held = {norm(r["text"]) for r in _rows() if r["split"] == "test"}
    with (SET.parent / "safety_prompts_fresh.csv").open(encoding="utf-8", newline="") as f:
        held |= {norm(r["text"]) for r in csv.DictReader(f)}
    assert not {norm(r["text"]) for r in train} & held
