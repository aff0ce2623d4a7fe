"""Natural-language captions for an emoji image, in every emojibase locale."""

from __future__ import annotations

import random

from unclip.data.emoji import EmojiEntry

# Several ways to name each style; the model also sees captions that leave the style out.
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "twemoji": ("twemoji style", "in the style of Twemoji", "Twitter emoji", "flat Twemoji art"),
    "noto": ("noto style", "in the style of Noto Emoji", "Google Noto emoji", "glossy Noto icon"),
    "openmoji": (
        "openmoji style",
        "in the style of OpenMoji",
        "outlined OpenMoji drawing",
        "open source emoji",
    ),
    "fluent-emoji-flat": ("flat Fluent icon", "fluent flat style", "in the style of Fluent Emoji Flat"),
    "fluent-emoji": (
        "3D Fluent emoji",
        "fluent style with gradients",
        "in the style of Microsoft Fluent Emoji",
    ),
    "fluent-emoji-high-contrast": (
        "monochrome high-contrast",
        "black and white Fluent icon",
        "high contrast line icon",
    ),
    "emojione": ("emojione style", "in the style of EmojiOne", "Emoji One art"),
}

# "{x}" is the subject (label, sometimes with tags), "{s}" a style phrase.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{x}",
        "an emoji of {x}",
        "{x}, {s}",
        "an icon of {x}, {s}",
        "{s}: {x}",
        "a picture of {x} as an emoji",
    ),
    "de": ("{x}", "ein Emoji: {x}", "{x}, {s}", "ein Symbol von {x}, {s}"),
    "fr": ("{x}", "un emoji : {x}", "{x}, {s}", "une icône de {x}, {s}"),
    "es": ("{x}", "un emoji de {x}", "{x}, {s}", "un icono de {x}, {s}"),
    "it": ("{x}", "un'emoji di {x}", "{x}, {s}", "un'icona di {x}, {s}"),
    "pt": ("{x}", "um emoji de {x}", "{x}, {s}", "um ícone de {x}, {s}"),
    "nl": ("{x}", "een emoji van {x}", "{x}, {s}"),
    "ja": ("{x}", "{x}の絵文字", "{x}、{s}"),
    "zh": ("{x}", "{x}的表情符号", "{x}，{s}"),
    "ru": ("{x}", "эмодзи: {x}", "{x}, {s}"),
}
FALLBACK = ("{x}", "{x}, {s}", "{x} — {s}")


def template_set(locale: str) -> tuple[str, ...]:
    return TEMPLATES.get(locale) or TEMPLATES.get(locale.split("-")[0]) or FALLBACK


def captions_for(
    entry: EmojiEntry, style: str, rng: random.Random, per_locale: int = 3
) -> dict[str, list[str]]:
    """A few distinct captions per locale, built from the label and the tags, naming the style in varied
    ways or not at all."""
    out: dict[str, list[str]] = {}
    for locale, label in entry.labels.items():
        tags = [t for t in entry.tags.get(locale, []) if t.lower() not in label.lower()]
        caps: list[str] = [label]
        for _ in range(per_locale * 3):
            if len(caps) >= per_locale:
                break
            subject = label
            if tags and rng.random() < 0.35:
                subject = f"{label} ({', '.join(rng.sample(tags, min(len(tags), 2)))})"
            template = rng.choice(template_set(locale))
            caption = template.format(x=subject, s=rng.choice(STYLE_PHRASES[style]))
            if caption not in caps:
                caps.append(caption)
        out[locale] = caps
    return out


def style_caption(entry: EmojiEntry, style: str, locale: str = "en") -> str:
    """The canonical caption: label plus the style's first phrase (used for evaluation prompts)."""
    label = entry.labels.get(locale) or entry.labels["en"]
    return f"{label}, {STYLE_PHRASES[style][0]}"
