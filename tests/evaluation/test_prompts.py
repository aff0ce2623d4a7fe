"""The evaluation prompts: worded as people write them, in many languages, and never taught to the model."""

from __future__ import annotations

import random
import re
from pathlib import Path

from unclip.data.captions import FALLBACK, STYLE_PHRASES, TEMPLATES, captions_for
from unclip.data.emoji import EmojiEntry
from unclip.data.requests import REQUEST_PARTS, is_tag, request
from unclip.evaluation.prompts import PHRASINGS, STYLE_NAMES, all_phrasings, build_prompts, frame
from unclip.training.data import load_images

TRAINING_TEMPLATES = {t for ts in (*TEMPLATES.values(), FALLBACK) for t in ts}


def test_no_evaluation_phrasing_is_a_caption_template() -> None:
    training = {frame(t) for t in TRAINING_TEMPLATES}
    overlap = [(loc, p) for loc, p in all_phrasings() if frame(p) in training]
    assert not overlap, f"evaluation phrasings used in training templates: {overlap}"


def test_the_check_would_see_an_overlap() -> None:
    # the comparison ignores case, spacing and which slot letter is used: a copied template is caught
    assert frame("{X},  {S}") == frame("{x}, {s}") in {frame(t) for t in TRAINING_TEMPLATES}


def test_captions_the_builder_writes_never_equal_an_evaluation_prompt() -> None:
    entry = EmojiEntry(
        hexcode="1F600", raw_hexcode="1F600", emoji="😀", group="smileys-emotion", subgroup="face-smiling",
        tone=(), labels={loc: "grinning face" for loc in PHRASINGS}, tags={loc: ["face", "grin"] for loc in PHRASINGS},
    )  # fmt: skip
    rng = random.Random(0)
    captions = {c for style in STYLE_PHRASES for _ in range(20)
                for caps in captions_for(entry, style, rng, per_locale=6).values() for c in caps}  # fmt: skip
    meta = [{"hexcode": "1F600", "base_hexcode": "1F600", "key": f"{s}_1F600", "style": s, "label": "grinning face",
             "captions": {loc: ["grinning face"] for loc in PHRASINGS}} for s in STYLE_PHRASES]  # fmt: skip
    prompts = build_prompts(meta * 40, meta * 40, n_per_kind=200)
    assert not {p.prompt for p in prompts} & captions


def test_the_set_has_the_breadth_it_promises() -> None:
    assert len(all_phrasings()) >= 40
    assert len(PHRASINGS) >= 8
    assert set(STYLE_NAMES) == set(STYLE_PHRASES)


def test_prompts_cover_seen_and_holdout_pairs_in_several_languages(emoji64: Path) -> None:
    seen, holdout = load_images(emoji64, 64, "train").meta, load_images(emoji64, 64, "holdout").meta
    prompts = build_prompts(seen, holdout, n_per_kind=50, seed=0)
    assert {p.kind for p in prompts} == {"seen", "holdout"}
    assert len({p.locale for p in prompts}) >= 3  # the fixture has en, de and ja captions
    keys = {m["key"] for m in seen} | {m["key"] for m in holdout}
    assert all(p.key in keys for p in prompts)
    assert prompts == build_prompts(seen, holdout, n_per_kind=50, seed=0)  # the same set every time


def _request_pattern(locale: str) -> re.Pattern[str]:
    """Every request `request(locale, ...)` can write, as a frame (slots as {}, lower case, single spaces)."""

    def alt(parts: tuple[str, ...]) -> str:
        options = set(parts) | ({"an "} if "a " in parts else set())
        escaped = (re.escape(frame(p.replace("{s}", "{}"))) if p.strip() else "" for p in options)
        return "(?:" + "|".join(sorted(escaped, key=len, reverse=True)) + ")"

    p = REQUEST_PARTS[locale]
    sp, subject = r"\s*", re.escape("{}")
    tags = tuple(f for f in p.style_first if is_tag(f))
    beside = tuple(f for f in p.style_first if not is_tag(f))
    noun, close = alt(p.noun), alt(p.close)
    last = sp.join((alt(p.open), alt(p.lead), subject, noun, alt(p.style_last), close))
    first = sp.join((alt((*tags, "")), alt(p.open), alt(p.lead), alt((*beside, "")), subject, noun, close))
    return re.compile(f"^(?:{last}|{first})$")


def test_no_evaluation_phrasing_is_a_request_of_any_language() -> None:
    rng = random.Random(0)
    for locale in REQUEST_PARTS:
        pattern = _request_pattern(locale)
        written = {frame(request(locale, "{x}", "{s}", rng)) for _ in range(3000)}
        assert all(pattern.match(w) for w in written), locale  # the pattern covers what the builder writes
        overlap = [(loc, p) for loc, p in all_phrasings() if pattern.match(frame(p))]
        assert not overlap, f"evaluation phrasings the {locale} request builder can write: {overlap}"
    english = _request_pattern("en")
    assert english.match(frame("Make a {X} {S}-style!")) and not english.match(frame("{x} and {s}"))
    assert _request_pattern("zh").match(frame("{s}：画一个{x}贴纸"))


def test_requests_name_the_subject_and_the_style_in_every_language() -> None:
    rng = random.Random(1)
    for locale in REQUEST_PARTS:
        for _ in range(200):
            text = request(locale, "grinning face", "Twemoji", rng)
            assert "grinning face" in text.lower() and "twemoji" in text.lower(), (locale, text)
