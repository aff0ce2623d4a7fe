"""Natural-language captions for an emoji image, in every emojibase locale: the label (sometimes with tags)
in templates of that language, naming the style in the ways people do (its set's name, the vendor or platform,
descriptions, abbreviations, misspellings, any case) or not at all.

The evaluation phrasings (`unclip.evaluation.prompts`) are kept out of these templates:
tests/evaluation/test_prompts.py asserts it."""

from __future__ import annotations

import random

from unclip.data.emoji import EmojiEntry
from unclip.data.requests import REQUEST_PARTS, request

# The canonical ways to name each style; the first is the one evaluation captions use ("label, phrase").
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

# Names for the style slot {s} of the templates, as people write them (in any language).
STYLE_NAMES: dict[str, tuple[str, ...]] = {
    "twemoji": ("Twemoji", "twemoji", "Twitter", "X/Twitter", "TWEMOJI", "Twemoij", "twitter emoji"),
    "noto": ("Noto", "Noto Emoji", "Google", "Android", "google noto", "NOTO", "Notto"),
    "openmoji": ("OpenMoji", "openmoji", "Open Moji", "OPENMOJI", "Openmojis"),
    "fluent-emoji-flat": (
        "Fluent Flat",
        "Microsoft Fluent flat",
        "fluent emoji flat",
        "FluentFlat",
        "Fluent 2D",
    ),
    "fluent-emoji": (
        "Fluent",
        "Fluent Emoji",
        "Microsoft",
        "Microsoft Fluent 3D",
        "Teams",
        "fluent 3d",
        "Fluant",
    ),
    "fluent-emoji-high-contrast": (
        "Fluent High Contrast",
        "Microsoft high-contrast",
        "fluent hc",
        "Fluent mono",
    ),
    "emojione": ("EmojiOne", "Emoji One", "emojione", "JoyPixels 2", "EMOJIONE", "EmojiOn"),
}

# Words of each language for the descriptive styles: flat, 3D, high contrast.
LOCAL_STYLE_WORDS: dict[str, tuple[str, str, str]] = {
    "bn": ("ফ্ল্যাট", "থ্রিডি", "হাই কনট্রাস্ট"),
    "da": ("flad", "3D", "høj kontrast"),
    "de": ("flach", "3D", "Hochkontrast"),
    "es": ("plano", "3D", "alto contraste"),
    "et": ("lame", "3D", "kõrge kontrastsus"),
    "fi": ("litteä", "3D", "korkea kontrasti"),
    "fr": ("plat", "3D", "contraste élevé"),
    "hi": ("फ्लैट", "3D", "हाई कॉन्ट्रास्ट"),
    "hu": ("lapos", "3D", "nagy kontraszt"),
    "it": ("piatto", "3D", "alto contrasto"),
    "ja": ("フラット", "3D", "ハイコントラスト"),
    "ko": ("플랫", "3D", "고대비"),
    "lt": ("plokščias", "3D", "didelis kontrastas"),
    "ms": ("rata", "3D", "kontras tinggi"),
    "nb": ("flat", "3D", "høy kontrast"),
    "nl": ("plat", "3D", "hoog contrast"),
    "pl": ("płaski", "3D", "wysoki kontrast"),
    "pt": ("plano", "3D", "alto contraste"),
    "ru": ("плоский", "3D", "высокий контраст"),
    "sv": ("platt", "3D", "hög kontrast"),
    "th": ("แบบแบน", "3 มิติ", "คอนทราสต์สูง"),
    "uk": ("пласкі", "3D", "висока контрастність"),
    "vi": ("phẳng", "3D", "tương phản cao"),
    "zh": ("扁平", "3D", "高对比度"),
    "zh-hant": ("扁平", "3D", "高對比"),
}

# "{x}" is the subject (label, sometimes with tags), "{s}" a style name.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{x}",
        "{x} emoji",
        "an emoji of {x}",
        "{x}, {s}",
        "an icon of {x}, {s}",
        "{s}: {x}",
        "a picture of {x} as an emoji",
        "{x} in the style of {s}",
        "{x} drawn in {s} style",
        "please draw {x} in {s} style",
        "create an emoji of {x} ({s})",
        "{x} — {s} version",
        "{s} version of {x}",
        "{s} | {x} emoji",
        "a {s} sticker of {x}",
        "{x} icon, {s}",
        "{x} as a {s} emoji",
        "could you make {x} in the {s} look?",
        "{s} artwork: {x}",
        "{x}, drawn like the {s} set",
        "emoji: {x}. style: {s}",
        "an illustration of {x} in {s}",
        "{x} sticker",
        "a drawing of {x}",
    ),
    "de": (
        "{x}",
        "ein Emoji: {x}",
        "{x}, {s}",
        "ein Symbol von {x}, {s}",
        "Emoji {x} im {s}-Design",
        "bitte {x} als {s} Sticker",
        "{x} – so wie bei {s}",
        "Zeichnung von {x} ({s})",
        "mach mir ein {x} Emoji",
    ),
    "fr": (
        "{x}",
        "un emoji : {x}",
        "{x}, {s}",
        "une icône de {x}, {s}",
        "emoji {x} style {s}",
        "dessine-moi {x} à la manière de {s}",
        "un autocollant {x} ({s})",
        "{x} version {s}",
        "un dessin de {x}",
    ),
    "es": (
        "{x}",
        "un emoji de {x}",
        "{x}, {s}",
        "un icono de {x}, {s}",
        "emoji de {x} con el estilo de {s}",
        "crea un sticker de {x} tipo {s}",
        "{x} versión {s}",
        "un dibujo de {x}",
        "quiero el emoji {x} de {s}",
    ),
    "it": (
        "{x}",
        "un'emoji di {x}",
        "{x}, {s}",
        "un'icona di {x}, {s}",
        "emoji {x} come su {s}",
        "crea uno sticker di {x} ({s})",
        "{x} in versione {s}",
        "un disegno di {x}",
    ),
    "pt": (
        "{x}",
        "um emoji de {x}",
        "{x}, {s}",
        "um ícone de {x}, {s}",
        "emoji de {x} com o estilo {s}",
        "faça um adesivo de {x} tipo {s}",
        "{x} versão do {s}",
        "um desenho de {x}",
    ),
    "nl": (
        "{x}",
        "een emoji van {x}",
        "{x}, {s}",
        "emoji {x} zoals bij {s}",
        "maak een sticker van {x} ({s})",
        "{x}, {s}-versie",
        "een tekening van {x}",
    ),
    "da": (
        "{x}",
        "en emoji af {x}",
        "{x}, {s}",
        "emoji {x} i {s}-stil",
        "tegn {x} som {s}",
        "{x} – {s}-udgave",
    ),
    "nb": (
        "{x}",
        "en emoji av {x}",
        "{x}, {s}",
        "emoji {x} i {s}-stil",
        "tegn {x} som {s}",
        "{x} – {s}-versjon",
    ),
    "sv": (
        "{x}",
        "en emoji av {x}",
        "{x}, {s}",
        "emoji {x} i {s}-stil",
        "rita {x} som {s}",
        "{x} – {s}-version",
    ),
    "fi": (
        "{x}",
        "emoji: {x}",
        "{x}, {s}",
        "{x}-emoji {s}-tyyliin",
        "piirrä {x} kuten {s}",
        "{x} ({s}-versio)",
    ),
    "et": ("{x}", "emotikon: {x}", "{x}, {s}", "{x} emotikon {s} stiilis", "joonista {x} nagu {s}"),
    "hu": ("{x}", "emoji: {x}", "{x}, {s}", "{x} emoji {s} stílusban", "rajzolj {x} emojit, mint a {s}"),
    "lt": ("{x}", "jaustukas: {x}", "{x}, {s}", "{x} jaustukas {s} stiliumi", "nupiešk {x} kaip {s}"),
    "pl": (
        "{x}",
        "emoji: {x}",
        "{x}, {s}",
        "emoji {x} w stylu {s}",
        "narysuj {x} jak w {s}",
        "{x} – wersja {s}",
    ),
    "ru": (
        "{x}",
        "эмодзи: {x}",
        "{x}, {s}",
        "смайлик {x} в духе {s}",
        "сделай стикер «{x}» ({s})",
        "{x} — версия {s}",
        "рисунок: {x}",
    ),
    "uk": (
        "{x}",
        "емодзі: {x}",
        "{x}, {s}",
        "емодзі {x} у стилі {s}",
        "намалюй {x} як у {s}",
        "{x} — версія {s}",
    ),
    "ja": (
        "{x}",
        "{x}の絵文字",
        "{x}、{s}",
        "{s}の{x}アイコン",
        "{x}の絵文字を{s}っぽく",
        "{x}のステッカー（{s}）",
        "{x}のイラスト",
    ),
    "ko": (
        "{x}",
        "{x} 이모지",
        "{x}, {s}",
        "{s} 스타일의 {x} 이모지",
        "{x}를 {s}처럼 그려줘",
        "{x} 스티커 ({s})",
    ),
    "zh": (
        "{x}",
        "{x}的表情符号",
        "{x}，{s}",
        "{s}风的{x}图标",
        "帮我画{x}的表情，{s}那种",
        "{x}贴纸（{s}）",
        "{x}的插画",
    ),
    "zh-hant": (
        "{x}",
        "{x}的表情符號",
        "{x}，{s}",
        "{s}風格的{x}圖示",
        "幫我畫{x}，像{s}那樣",
        "{x}貼圖（{s}）",
    ),
    "hi": ("{x}", "{x} इमोजी", "{x}, {s}", "{s} स्टाइल में {x} इमोजी", "{x} का स्टिकर ({s})"),
    "bn": ("{x}", "{x} ইমোজি", "{x}, {s}", "{s} স্টাইলে {x} ইমোজি", "{x} এর স্টিকার ({s})"),
    "th": ("{x}", "อีโมจิ{x}", "{x}, {s}", "อีโมจิ{x}สไตล์{s}", "วาด{x}แบบ{s}"),
    "vi": ("{x}", "biểu tượng cảm xúc {x}", "{x}, {s}", "emoji {x} theo phong cách {s}", "vẽ {x} giống {s}"),
    "ms": ("{x}", "emoji {x}", "{x}, {s}", "emoji {x} gaya {s}", "lukis {x} seperti {s}"),
}
FALLBACK = ("{x}", "{x}, {s}", "{x} — {s}")


def template_set(locale: str) -> tuple[str, ...]:
    return TEMPLATES.get(locale) or TEMPLATES.get(locale.split("-")[0]) or FALLBACK


def style_names(style: str, locale: str = "en") -> tuple[str, ...]:
    """Every name a caption in `locale` may give `style`: its canonical phrases, the names people use, and
    the descriptive styles in the language's own words."""
    words = LOCAL_STYLE_WORDS.get(locale) or LOCAL_STYLE_WORDS.get(locale.split("-")[0])
    local: tuple[str, ...] = ()
    if words:
        flat, three_d, contrast = words
        local = {
            "fluent-emoji-flat": (f"Fluent {flat}",),
            "fluent-emoji": (f"Fluent {three_d}",),
            "fluent-emoji-high-contrast": (f"Fluent {contrast}",),
        }.get(style, ())
    return STYLE_PHRASES.get(style, ()) + STYLE_NAMES.get(style, ()) + local


def names_style(caption: str, style: str, locale: str = "en") -> bool:
    """Whether a caption names its style (so that it fits no other style)."""
    text = caption.lower()
    return any(name.lower() in text for name in style_names(style, locale))


def captions_for(
    entry: EmojiEntry, style: str, rng: random.Random, per_locale: int = 3
) -> dict[str, list[str]]:
    """A few distinct captions per locale (twice as many in a language with request parts, English among
    them): the label first, then the label (sometimes with tags) in that language's templates or, half the
    time in a language with request parts, in a `request` put together from them, naming the style in
    varied ways or not at all."""
    out: dict[str, list[str]] = {}
    for locale, label in entry.labels.items():
        tags = [t for t in entry.tags.get(locale, []) if t.lower() not in label.lower()]
        names = style_names(style, locale)
        caps: list[str] = [label]
        want = per_locale * 2 if locale in REQUEST_PARTS else per_locale
        for _ in range(want * 3):
            if len(caps) >= want:
                break
            subject = label
            if tags and rng.random() < 0.35:
                subject = f"{label} ({', '.join(rng.sample(tags, min(len(tags), 2)))})"
            elif rng.random() < 0.1:
                subject = label.capitalize() if rng.random() < 0.7 else label.upper()
            if locale in REQUEST_PARTS and rng.random() < 0.5:
                caption = request(locale, subject, rng.choice(names), rng)
            else:
                caption = rng.choice(template_set(locale)).format(x=subject, s=rng.choice(names))
            if caption not in caps:
                caps.append(caption)
        out[locale] = caps
    return out


def style_caption(entry: EmojiEntry, style: str, locale: str = "en") -> str:
    """The canonical caption: label plus the style's first phrase (used for evaluation prompts)."""
    label = entry.labels.get(locale) or entry.labels["en"]
    return f"{label}, {STYLE_PHRASES[style][0]}"
