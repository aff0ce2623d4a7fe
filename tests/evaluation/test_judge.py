"""The judge: trained on real renders only, it ranks a real render above noise, and reports its own floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unclip.evaluation.judge import Scorer, Target, flat_images, judge_report, targets_of
from unclip.models.judge import Judge, is_probe_pair
from unclip.training.data import load_images
from unclip.training.judge import (
    colour_jitter,
    gaussian_blur,
    jpeg_copies,
    judge_augment,
    judge_parts,
    load_all,
)


def test_judge_ranks_a_real_render_above_noise(tiny_judge: Path, emoji64: Path) -> None:
    scorer = Scorer.load(tiny_judge)
    train = load_images(emoji64, 64, "train")
    targets = targets_of(train.meta)
    real = scorer.predict(train.images)
    noise = scorer.predict(flat_images(len(train), 0, "noise"))
    truth = torch.tensor([scorer.concept_index[t.base_hexcode] for t in targets])

    def p_true(out) -> torch.Tensor:
        return out.concept.softmax(1).gather(1, truth[:, None]).squeeze(1)

    assert (p_true(real) > p_true(noise)).float().mean() > 0.8
    assert scorer.score(real, targets)["concept_top5"] > scorer.score(noise, targets)["concept_top5"]


def test_judge_never_trains_on_holdout_or_probe_pairs(tiny_judge: Path, emoji64: Path) -> None:
    info = json.loads((tiny_judge / "judge.json").read_text())
    every = load_all(emoji64)
    left_out = [
        m for m in every.meta if m["split"] == "holdout" or is_probe_pair(m["base_hexcode"], m["style"], 4)
    ]
    assert info["trained_on"] == {
        "images": len(every) - len(left_out), "left_out": len(left_out), "twins_left_out": 0
    }
    assert any(m["split"] == "holdout" for m in left_out)
    # every emoji has a class, skin tones counted as their base emoji
    assert set(info["classes"]["concept"]) == {m["base_hexcode"] for m in every.meta}


def test_judge_report_gives_ceiling_floor_and_real_frechet(tiny_judge: Path, emoji64: Path) -> None:
    report = judge_report(Scorer.load(tiny_judge), emoji64, n=8)
    assert any("never trained on" in k for k in report["real"])
    assert any("trained on)" in k and "never" not in k for k in report["real"])
    assert set(report["floor"]) == {"noise", "blank"}
    assert report["frechet_real_vs_real"]["n"] == 8 and report["frechet_real_vs_real"]["distance"] >= 0


def test_score_refuses_emoji_the_judge_does_not_know(tiny_judge: Path) -> None:
    scorer = Scorer.load(tiny_judge)
    out = scorer.predict(flat_images(1, 0, "blank"))
    with pytest.raises(ValueError, match="does not know"):
        scorer.score(out, [Target("1F600-FFFF", "noto")])


def test_judge_round_trips_through_its_folder(tmp_path: Path) -> None:
    classes = {"concept": ["1F600", "2764"], "labels": ["a", "b"], "concept_group": [0, 1],
               "group": ["g", "h"], "style": ["noto", "twemoji"]}  # fmt: skip
    judge = Judge({"embedding_size": 8, "hidden_sizes": [8, 8, 8, 8], "depths": [1, 1, 1, 1]}, classes).eval()
    judge.save(tmp_path / "j", {"probe_percent": 3})
    again = Judge.load(tmp_path / "j")
    x = torch.rand(2, 3, 256, 256) * 2 - 1  # any size is read at 64 px
    assert torch.allclose(judge(x).concept, again(x).concept, atol=1e-5)
    assert again.info["probe_percent"] == 3


def test_augmentations_keep_range_shape_and_white_border() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.full((6, 3, 64, 64), 255, dtype=torch.uint8)
    clean[:, 0, 20:44, 20:44] = 200
    x = judge_augment(clean, jpeg_copies(clean, 0), g)
    assert x.shape == (6, 3, 64, 64) and x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
    blurred = gaussian_blur(torch.ones(2, 3, 16, 16), torch.tensor([0.5, 1.5]))
    assert torch.allclose(blurred, torch.ones_like(blurred), atol=1e-5)  # white stays white at the border
    same = colour_jitter(torch.zeros(2, 3, 8, 8), g, strength=0.0)
    assert torch.allclose(same, torch.zeros_like(same), atol=1e-5)


def test_the_bundled_judge_loads_and_names_coloured_circles() -> None:
    """models/judge-emoji, on drawings it never saw: flat discs drawn here are the coloured-circle emoji."""
    import numpy as np

    from unclip.evaluation.cascade import disc_image

    scorer = Scorer.load()  # models/judge-emoji
    assert len(scorer.judge.classes["concept"]) > 1500 and len(scorer.judge.classes["style"]) == 7
    circles = {"1F534": (221, 46, 68), "1F7E2": (120, 177, 89), "1F535": (85, 172, 238), "1F7E1": (253, 203, 88),
               "1F7E3": (170, 142, 214), "1F7E0": (244, 144, 12), "26AB": (49, 55, 61)}  # fmt: skip
    discs = torch.from_numpy(np.stack([np.asarray(disc_image(c, radius=0.44)) for c in circles.values()]))
    targets = [Target(h, "twemoji") for h in circles]
    drawn = scorer.score(scorer.predict(discs.permute(0, 3, 1, 2)), targets)
    noise = scorer.score(scorer.predict(flat_images(len(circles), 0, "noise")), targets)
    assert drawn["concept_top1"] > 80 and noise["concept_top5"] == 0


def test_a_drawing_identical_to_an_unseen_one_is_neither_trained_nor_reported(emoji64: Path) -> None:
    from dataclasses import replace

    every = load_all(emoji64)
    held = next(i for i, m in enumerate(every.meta) if m["split"] == "holdout")
    twin = next(
        i for i, m in enumerate(every.meta)
        if m["style"] == every.meta[held]["style"] and m["split"] == "train"
        and not is_probe_pair(m["base_hexcode"], m["style"], 4)
    )  # fmt: skip
    assert judge_parts(every, 4)[twin] == "trained"
    images, alpha = every.images.clone(), every.alpha.clone()
    images[twin], alpha[twin] = images[held], alpha[held]  # a set that draws two emoji alike
    parts = judge_parts(replace(every, images=images, alpha=alpha), 4)
    assert parts[twin] == "twin" and parts[held] == "unseen" and parts.count("twin") == 1
