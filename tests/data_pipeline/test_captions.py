"""Captions as people write them: templates of each language, style names as people say them."""

from __future__ import annotations

import random

from unclip.data.captions import FALLBACK, STYLE_PHRASES, captions_for, names_style, style_names, template_set
from unclip.data.emoji import LOCALES, EmojiEntry


def test_every_locale_has_templates_of_its_own() -> None:
    english = set(template_set("en"))
    for locale in LOCALES:
        templates = template_set(locale)
        assert templates != FALLBACK, locale
        if not locale.startswith("en"):
            assert len(set(templates) - english) >= 2, locale  # not English templates around a translation


def test_styles_are_named_in_many_ways_and_in_the_language() -> None:
    for style in STYLE_PHRASES:
        assert len(style_names(style)) >= 7
    assert "Fluent 高对比度" in style_names("fluent-emoji-high-contrast", "zh")
    assert "Fluent alto contraste" in style_names("fluent-emoji-high-contrast", "es-mx")
    assert names_style("un sticker, Fluent alto contraste", "fluent-emoji-high-contrast", "es")
    assert not names_style("a red apple emoji", "noto")


def test_captions_vary_their_wording() -> None:
    entry = EmojiEntry("1F34E", "1F34E", "🍎", "food-drink", "food-fruit", (),
                       labels={"en": "red apple", "ja": "赤いりんご"}, tags={"en": ["fruit"], "ja": []})  # fmt: skip
    rng = random.Random(0)
    seen = {c for _ in range(50) for c in captions_for(entry, "noto", rng, per_locale=4)["en"]}
    assert len(seen) > 30 and "red apple" in seen
    assert any("Google" in c or "Android" in c for c in seen)  # vendor and platform names


def test_request_languages_get_twice_as_many_captions_put_together_from_parts() -> None:
    entry = EmojiEntry("1F34E", "1F34E", "🍎", "food-drink", "food-fruit", (),
                       labels={"en": "red apple", "ja": "赤いりんご", "ko": "빨간 사과"},
                       tags={"en": [], "ja": [], "ko": []})  # fmt: skip
    rng = random.Random(0)
    caps = [captions_for(entry, "noto", rng, per_locale=3) for _ in range(200)]
    assert all(len(c["en"]) == 6 and len(c["ja"]) == 6 and len(c["ko"]) == 3 for c in caps)
    english = {c for cap in caps for c in cap["en"]}
    templated = {t.format(x="red apple", s=s) for t in template_set("en") for s in style_names("noto")}
    assert len(english - templated) > 300  # hundreds of wordings no template has
    assert all("red apple" in c.lower() for c in english)
    assert sum(names_style(c, "noto") for c in english) > 0.8 * len(english)
