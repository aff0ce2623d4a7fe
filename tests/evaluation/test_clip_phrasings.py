"""The text tower's check on the evaluation phrasings: style among an emoji's renders, emoji among a style's."""

from __future__ import annotations

from pathlib import Path

import torch

from unclip.evaluation.metrics import pair_hits

# six renders: emoji 0 in styles 0, 1, 2; emoji 1 in styles 0, 1; emoji 2 in style 0
BASE = torch.tensor([0, 0, 0, 1, 1, 2])
STYLE = torch.tensor([0, 1, 2, 0, 1, 0])


def test_pair_hits_reads_style_among_the_emoji_and_emoji_among_the_style() -> None:
    sims = torch.tensor(
        [
            # asks for render 1 (emoji 0, style 1): closest of emoji 0 is render 1, and render 1 leads style 1
            [0.1, 0.9, 0.2, 0.0, 0.3, 0.0],
            # asks for render 2 (emoji 0, style 2): closest of emoji 0 is render 0 (wrong style), but emoji 0
            # is style 2's only render, so it is in that style's top k
            [0.9, 0.1, 0.5, 0.0, 0.0, 0.0],
            # asks for render 3 (emoji 1, style 0): the right style, but emoji 1 is third of style 0's three
            [0.0, 0.0, 0.0, 0.1, 0.0, 0.2],
        ]
    )
    sims[2, 0] = 0.5
    style_hit, emoji_hit = pair_hits(sims, BASE, STYLE, torch.tensor([1, 2, 3]), k=2)
    assert style_hit.tolist() == [True, False, True]
    assert emoji_hit.tolist() == [True, True, False]
    _, emoji_hit = pair_hits(sims, BASE, STYLE, torch.tensor([1, 2, 3]), k=3)
    assert emoji_hit.tolist() == [True, True, True]


def test_eval_clip_reports_the_phrasings_on_a_tiny_model(tiny_model: Path, emoji64: Path) -> None:
    from unclip.engine import Engine
    from unclip.evaluation.stages import eval_clip

    result = eval_clip(Engine.load(tiny_model), emoji64)
    phr = result["phrasings"]
    assert set(phr) == {"everyday", "canonical"}
    for wording in phr.values():
        assert "seen" in wording
        for langs in wording.values():
            for figures in langs.values():
                assert figures["prompts"] > 0
                assert 0.0 <= figures["style"] <= 1.0 and 0.0 <= figures["emoji_top5"] <= 1.0


def test_stage_figures_are_measured_on_pairs_no_config_trains_on(tiny_model: Path, emoji64: Path) -> None:
    import json

    from unclip import REPO_ROOT
    from unclip.data.shards import iter_samples
    from unclip.engine import Engine
    from unclip.evaluation.stages import UNTRAINED, eval_movq, eval_prior

    for config in (REPO_ROOT / "configs").glob("*.json"):
        assert UNTRAINED not in json.loads(config.read_text()).get("data", {}).get("train_splits", []), config
    engine = Engine.load(tiny_model)
    held = sum(1 for p in (emoji64 / "shards" / "64").glob(f"{UNTRAINED}-*.tar") for _ in iter_samples([p]))
    movq = eval_movq(engine, emoji64)
    assert movq["split"] == UNTRAINED and movq["images"] == held > 0
    assert set(eval_prior(engine, emoji64, n_seen=4)) == {"seen", "holdout"}
