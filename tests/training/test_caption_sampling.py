"""Which caption a training step reads: each image's captions uniformly, or its English ones a set share."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from unclip.training.data import load_captions


class FakeTokenizer:
    """Just enough of a Hugging Face tokenizer for load_captions."""

    model_max_length = 4

    def __call__(self, texts: list[str], **_: object):
        ids = torch.ones(len(texts), self.model_max_length, dtype=torch.long)
        return SimpleNamespace(input_ids=ids, attention_mask=torch.ones_like(ids))


META = [
    {"style": "twemoji", "captions": {"en": ["cat"], "de": ["Katze", "eine Katze"], "ja": ["猫"]}},
    {"style": "noto", "captions": {"en": ["dog", "a dog"], "fr": ["chien"]}},
    {"style": "noto", "captions": {"de": ["Maus"]}},  # no English: its captions stay uniform
]


def _shares(
    english_share: float | None, weights: dict[str, float] | None = None, draws: int = 40_000
) -> list[dict[str, float]]:
    caps = load_captions(SimpleNamespace(meta=META), FakeTokenizer(), None, english_share, weights)
    locale = [loc for m in META for loc, cs in m["captions"].items() for _ in cs]
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(len(META)):
        picks = caps.sample(torch.full((draws,), i), gen)
        assert bool((caps.owner[picks] == i).all())  # always one of the image's own captions
        counts: dict[str, float] = {}
        for p in picks.tolist():
            counts[locale[p]] = counts.get(locale[p], 0) + 1 / draws
        out.append(counts)
    return out


def test_uniform_by_default() -> None:
    first, second, third = _shares(None)
    assert abs(first["en"] - 0.25) < 0.01 and abs(first["de"] - 0.5) < 0.01
    assert abs(second["en"] - 2 / 3) < 0.01 and set(third) == {"de"}


def test_english_share_weights_each_image() -> None:
    first, second, third = _shares(0.4)
    assert abs(first["en"] - 0.4) < 0.01 and abs(first["de"] - 0.4) < 0.01 and abs(first["ja"] - 0.2) < 0.01
    assert abs(second["en"] - 0.4) < 0.01 and abs(second["fr"] - 0.6) < 0.01
    assert set(third) == {"de"}


def test_locale_weights_favour_a_language_over_the_others() -> None:
    first, second, third = _shares(0.4, {"ja": 4.0})
    assert abs(first["en"] - 0.4) < 0.01  # the English share holds
    assert abs(first["ja"] - 0.4) < 0.01 and abs(first["de"] - 0.2) < 0.01  # 4 × 1 caption against 2
    assert abs(second["fr"] - 0.6) < 0.01 and set(third) == {"de"}
    first, _, _ = _shares(None, {"de": 0.5})
    assert abs(first["de"] - 1 / 3) < 0.01 and abs(first["en"] - 1 / 3) < 0.01


def test_an_image_without_a_caption_in_the_locales_is_said_not_given_another_images() -> None:
    """The third image has no English caption: it was trained on the second image's last one."""
    import pytest

    with pytest.raises(ValueError, match="1 of 3 images have no caption"):
        load_captions(SimpleNamespace(meta=META), FakeTokenizer(), ["en"])
    assert len(load_captions(SimpleNamespace(meta=META), FakeTokenizer(), ["en", "de"]).owner) == 6
