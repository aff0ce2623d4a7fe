"""Evaluation prompts: requests worded the way people write them, in ten languages, for seen pairs and holdout
pairs. They exist for evaluation only: none of their phrasings may appear among the caption templates the
model trains on (tests/evaluation/test_prompts.py asserts it), so they measure how the model reads words it
has never been taught.

A phrasing has two slots: {x}, the emoji's label in that language, and {s}, a name for the style as people
say it (the vendor, the platform, a nickname, sometimes misspelt)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

PHRASINGS: dict[str, tuple[str, ...]] = {
    "en": (
        "Make a {x} in {s} style",
        "draw {x} like the {s} emoji font",
        "the {s} version of the {x} emoji",
        "{x} | {s}",
        "{s} emoji — {x}",
        "{X} EMOJI, {S}",
        "can you draw me {x}? {s} look please",
        "I want the {x} emoji as {s} renders it",
        "{s}'s {x}",
        "{x} in {s}",
        "{x} ({s})",
        "show me {x} the way {s} draws it",
        "{x} emoji but make it {s}",
        "generate: {x} / style: {s}",
        "{s} emoji set, {x} drawn",
        "a sticker of {x} from {s}",
        "{x} artwork that looks like {s}",
        "pls make {x} emoij in {s} stlye",
        "{x} emoji!!! {S} please",
        "What does {x} look like in {s}?",
        "{x} as it appears on {s}",
        "design {x}, {s} aesthetic",
    ),
    "es": (
        "Haz {x} al estilo {s}",
        "el emoji de {x} en versión {s}",
        "dibuja {x} como en {s}",
        "{x} estilo {s}",
    ),
    "fr": (
        "Dessine {x} façon {s}",
        "l'emoji {x} version {s}",
        "{x} dans le style {s}",
        "je veux {x} comme chez {s}",
    ),
    "de": ("Zeichne {x} im {s}-Stil", "{x} als {s}-Emoji", "das {s}-Emoji für {x}", "{x} im Stil von {s}"),
    "it": ("Disegna {x} in stile {s}", "l'emoji {x} versione {s}", "{x} alla maniera di {s}"),
    "pt": ("Desenhe {x} no estilo {s}", "o emoji {x} versão {s}", "{x} ao estilo {s}"),
    "ja": ("{s}風の{x}の絵文字", "{x}を{s}スタイルで描いて", "{x}（{s}風）", "{s}版の{x}"),
    "zh": ("画一个{s}风格的{x}", "{x}，{s}风格", "{s}版本的{x}表情", "请用{s}风格画{x}"),
    "ru": ("Нарисуй {x} в стиле {s}", "эмодзи {x} как в {s}", "{s}: эмодзи «{x}»"),
    "nl": ("Teken {x} in {s}-stijl", "{x} in de stijl van {s}", "de {s}-versie van de emoji {x}"),
}

# How people name the styles: vendors, platforms, nicknames, a few misspellings.
STYLE_NAMES: dict[str, tuple[str, ...]] = {
    "twemoji": ("Twemoji", "Twitter", "X (Twitter)", "Twiter", "twemoji"),
    "noto": ("Noto", "Google", "Android", "Noto Color Emoji", "Gogle"),
    "openmoji": ("OpenMoji", "Open Moji", "openmoji", "OpenMoij"),
    "fluent-emoji-flat": ("Fluent Flat", "Microsoft flat", "flat Fluent", "Teams flat", "Fluent flat (2D)"),
    "fluent-emoji": ("Fluent 3D", "Microsoft 3D", "Fluent", "Windows 11", "Fleunt 3D"),
    "fluent-emoji-high-contrast": (
        "high-contrast Fluent",
        "Fluent high contrast",
        "Microsoft high contrast",
        "black and white Fluent",
    ),
    "emojione": ("EmojiOne", "Emoji One", "JoyPixels", "emojione", "EmojOne"),
}
# Languages that name the descriptive styles in their own words.
LOCAL_STYLE_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "es": {"fluent-emoji-high-contrast": ("Fluent alto contraste",), "fluent-emoji-flat": ("Fluent plano",)},
    "pt": {"fluent-emoji-high-contrast": ("Fluent alto contraste",), "fluent-emoji-flat": ("Fluent plano",)},
    "fr": {"fluent-emoji-high-contrast": ("Fluent contraste élevé",), "fluent-emoji-flat": ("Fluent plat",)},
    "de": {"fluent-emoji-high-contrast": ("Fluent Hochkontrast",), "fluent-emoji-flat": ("Fluent flach",)},
    "it": {
        "fluent-emoji-high-contrast": ("Fluent ad alto contrasto",),
        "fluent-emoji-flat": ("Fluent piatto",),
    },
    "nl": {"fluent-emoji-high-contrast": ("Fluent hoog contrast",), "fluent-emoji-flat": ("Fluent plat",)},
    "ja": {"fluent-emoji-high-contrast": ("Fluentハイコントラスト",), "noto": ("Google", "Noto")},
    "zh": {"fluent-emoji-high-contrast": ("Fluent高对比度",), "twemoji": ("推特", "Twemoji")},
    "ru": {"fluent-emoji-high-contrast": ("Fluent высокий контраст",), "twemoji": ("Твиттер", "Twemoji")},
}
NON_ENGLISH = tuple(loc for loc in PHRASINGS if loc != "en")


@dataclass(frozen=True)
class EvalPrompt:
    prompt: str
    locale: str
    phrasing: str
    kind: str  # "seen" or "holdout"
    base_hexcode: str
    style: str
    key: str  # the image the prompt asks for (its real render), as in the dataset's metadata


def frame(template: str) -> str:
    """A phrasing reduced to its wording: slots as {}, lower case, single spaces."""
    t = re.sub(r"\{[a-zA-Z]\}", "{}", template).lower()
    return re.sub(r"\s+", " ", t).strip()


def all_phrasings() -> list[tuple[str, str]]:
    return [(loc, p) for loc, ps in PHRASINGS.items() for p in ps]


def style_names(style: str, locale: str) -> tuple[str, ...]:
    return LOCAL_STYLE_NAMES.get(locale, {}).get(style, ()) + STYLE_NAMES[style]


def render(phrasing: str, label: str, style_name: str) -> str:
    return phrasing.format(x=label, s=style_name, X=label.upper(), S=style_name.upper())


def build_prompts(
    seen: list[dict], holdout: list[dict], n_per_kind: int = 160, english_share: float = 0.6, seed: int = 0
) -> list[EvalPrompt]:
    """n_per_kind prompts for seen pairs and for holdout pairs (image metadata of the dataset; skin-tone
    variants are skipped). About english_share of them are English; the rest cycle through the other
    languages, each language's phrasings in turn, with the label in that language."""
    rng = random.Random(seed)
    prompts: list[EvalPrompt] = []
    counters: dict[str, int] = {}
    for kind, metas in (("seen", seen), ("holdout", holdout)):
        pool = sorted((m for m in metas if m["hexcode"] == m["base_hexcode"]), key=lambda m: m["key"])
        for k, m in enumerate(rng.sample(pool, min(n_per_kind, len(pool)))):
            locale = "en" if rng.random() < english_share else NON_ENGLISH[k % len(NON_ENGLISH)]
            label = m["label"] if locale == "en" else (m["captions"].get(locale) or [None])[0]
            if not label:
                locale, label = "en", m["label"]
            phrasings = PHRASINGS[locale]
            phrasing = phrasings[counters.get(locale, 0) % len(phrasings)]
            counters[locale] = counters.get(locale, 0) + 1
            name = rng.choice(style_names(m["style"], locale))
            label = label if rng.random() < 0.8 else label[:1].upper() + label[1:]
            prompts.append(
                EvalPrompt(
                    render(phrasing, label, name),
                    locale,
                    phrasing,
                    kind,
                    m["base_hexcode"],
                    m["style"],
                    m["key"],
                )
            )
    return prompts
