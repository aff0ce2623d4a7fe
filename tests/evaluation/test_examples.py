"""`unclip eval examples`: prompts measured to draw well, written into the model folder and read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from unclip.engine import Engine
from unclip.evaluation.examples import find_examples, write_examples
from unclip.evaluation.judge import Scorer
from unclip.models.examples import read_examples


def test_examples_are_judged_kept_by_share_and_read_back(
    tiny_model: Path, tiny_judge: Path, emoji64: Path, tmp_path: Path
) -> None:
    engine = Engine.load(tiny_model)
    engine.prior_steps, engine.decoder_steps = 2, 2
    scorer = Scorer.load(tiny_judge)
    everything = find_examples(engine, scorer, emoji64, candidates=3, n=2, min_share=0.0)
    assert everything["tried"] == 3 and len(everything["examples"]) == 3
    assert all(0 <= e["concept_top5"] <= 100 and 0 <= e["style"] <= 100 for e in everything["examples"])
    assert not any("{" in e["prompt"] for e in everything["examples"])
    strict = find_examples(engine, scorer, emoji64, candidates=3, n=2, min_share=101.0)
    assert strict["examples"] == []
    model = shutil.copytree(tiny_model, tmp_path / "model")
    write_examples(model, everything)
    assert read_examples(model) == [e["prompt"] for e in everything["examples"]]
    (model / "examples.json").write_text("{not json")
    assert read_examples(model) == []
    assert json.loads(json.dumps(everything))  # plain JSON
