"""Join Iconify emoji sets to emojibase entries by code point."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
LOCALES = (
    "bn",
    "da",
    "de",
    "en",
    "en-gb",
    "es",
    "es-mx",
    "et",
    "fi",
    "fr",
    "hi",
    "hu",
    "it",
    "ja",
    "ko",
    "lt",
    "ms",
    "nb",
    "nl",
    "pl",
    "pt",
    "ru",
    "sv",
    "th",
    "uk",
    "vi",
    "zh",
    "zh-hant",
)


def normalize_hexcode(code: str) -> str:
    """Upper case, '-' separated, without U+FE0F variation selectors."""
    parts = [p for p in re.split(r"[-_\s]+", code.strip().upper()) if p and p != "FE0F"]
    return "-".join(p.lstrip("0") or "0" for p in parts)


def base_hexcode(code: str) -> str:
    """The hexcode with skin-tone modifiers removed: the emoji a skin-tone variant belongs to."""
    return "-".join(p for p in normalize_hexcode(code).split("-") if p not in SKIN_TONES)


# ZWJ sequences that differ only by a gender sign, a direction arrow or which person (man, woman, adult;
# boy, girl, child; old man, old woman, older adult) draw the same thing in another version
_VERSION_SIGNS = {"2640", "2642", "27A1", "200D"}
_ONE_PERSON = {"1F468": "P", "1F469": "P", "1F9D1": "P", "1F466": "C", "1F467": "C", "1F9D2": "C",
               "1F474": "O", "1F475": "O", "1F9D3": "O"}  # fmt: skip


def family_hexcode(code: str) -> str:
    """What an emoji's gender and direction versions share: `woman teacher`, `man teacher` and `teacher`,
    or `person walking` and `person walking facing right`, have one family."""
    parts = base_hexcode(code).split("-")
    if len(parts) == 1:  # a sign on its own (female sign, right arrow) is its own emoji, not a version mark
        return _ONE_PERSON.get(parts[0], parts[0])
    return "-".join(_ONE_PERSON.get(p, p) for p in parts if p not in _VERSION_SIGNS)


def slug(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


@dataclass
class EmojiEntry:
    hexcode: str  # normalised
    raw_hexcode: str  # as emojibase writes it
    emoji: str
    group: str
    subgroup: str
    tone: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=dict)  # locale -> label
    tags: dict[str, list[str]] = field(default_factory=dict)  # locale -> tags

    @property
    def base(self) -> str:
        return base_hexcode(self.hexcode)


@dataclass
class Icon:
    style: str
    name: str
    svg: str
    entry: EmojiEntry


def load_emojibase(root: Path, locales: tuple[str, ...] = LOCALES) -> dict[str, EmojiEntry]:
    messages = json.loads((root / "en" / "messages.json").read_text())
    groups = {g["order"]: g["key"] for g in messages["groups"]}
    subgroups = {g["order"]: g["key"] for g in messages["subgroups"]}
    entries: dict[str, EmojiEntry] = {}
    for locale in ("en", *[loc for loc in locales if loc != "en"]):
        data = json.loads((root / locale / "data.json").read_text())
        for item in data:
            variants = [item, *item.get("skins", [])]
            for var in variants:
                code = normalize_hexcode(var["hexcode"])
                if locale == "en":
                    if "group" not in var and "group" not in item:
                        continue  # regional indicators and other components without a group
                    tone = var.get("tone", ())
                    entries[code] = EmojiEntry(
                        hexcode=code,
                        raw_hexcode=var["hexcode"],
                        emoji=var["emoji"],
                        group=groups.get(var.get("group", item.get("group")), ""),
                        subgroup=subgroups.get(var.get("subgroup", item.get("subgroup")), ""),
                        tone=tuple(tone) if isinstance(tone, list) else ((tone,) if tone else ()),
                    )
                entry = entries.get(code)
                if entry is None or (locale not in locales and locale != "en"):
                    continue  # English is always kept: the name join and the `.txt` caption need it
                entry.labels[locale] = var["label"]
                # skin-tone variants carry no tags of their own: they share the base emoji's
                entry.tags[locale] = list(var.get("tags") or item.get("tags") or [])
    return {k: v for k, v in entries.items() if v.group != "component"}


def _svg(icon: dict, default_w: int, default_h: int) -> str:
    left, top = icon.get("left", 0), icon.get("top", 0)
    w, h = icon.get("width", default_w), icon.get("height", default_h)
    body = icon["body"]
    # Iconify transformations (aliases such as "backhand-index-pointing-right" are flipped parents)
    transforms = []
    if icon.get("rotate", 0) % 4:
        transforms.append(f"rotate({90 * (icon['rotate'] % 4)} {left + w / 2:g} {top + h / 2:g})")
    if icon.get("hFlip"):
        transforms.append(f"translate({2 * left + w:g} 0) scale(-1 1)")
    if icon.get("vFlip"):
        transforms.append(f"translate(0 {2 * top + h:g}) scale(1 -1)")
    if transforms:
        body = f'<g transform="{" ".join(transforms)}">{body}</g>'
    if w != h:  # a few icons are not square: centre them on a square canvas
        side = max(w, h)
        left, top, w, h = left - (side - w) / 2, top - (side - h) / 2, side, side
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {w} {h}" width="{w}" height="{h}">{body}</svg>'
    )


def _resolve(icons: dict, aliases: dict, name: str) -> dict | None:
    """The icon `name` with its alias chain applied: the alias nearest the name wins for plain properties,
    flips combine by exclusive or and rotations add up (as Iconify does). The result's "parent" is the
    name of the icon in the table."""
    seen = 0
    merged: dict = {}
    flips = {"hFlip": False, "vFlip": False, "rotate": 0}
    while name not in icons and name in aliases and seen < 8:
        alias = aliases[name]
        merged = {**{k: v for k, v in alias.items() if k not in ("parent", *flips)}, **merged}
        flips = {
            "hFlip": flips["hFlip"] ^ bool(alias.get("hFlip")),
            "vFlip": flips["vFlip"] ^ bool(alias.get("vFlip")),
            "rotate": flips["rotate"] + alias.get("rotate", 0),
        }
        name = alias["parent"]
        seen += 1
    if name not in icons:
        return None
    icon = icons[name]
    return {
        **icon,
        **merged,
        "parent": name,
        "hFlip": flips["hFlip"] ^ bool(icon.get("hFlip")),
        "vFlip": flips["vFlip"] ^ bool(icon.get("vFlip")),
        "rotate": flips["rotate"] + icon.get("rotate", 0),
    }


def _chars(pkg: Path) -> dict[str, str]:
    path = pkg / "chars.json"
    return json.loads(path.read_text()) if path.exists() else {}


def join_icons(
    style_dirs: dict[str, Path], entries: dict[str, EmojiEntry]
) -> tuple[list[Icon], dict[str, dict[str, int]]]:
    """Icons of every style joined to emojibase by code point; also per-style join statistics.

    Sets whose chars.json is missing or empty (fluent-emoji, emojione) are joined by icon name, through
    the name→code maps of the sets that do ship one and through slugs of emojibase's English labels.
    "dropped" counts the icons of a set's table that no joined name resolves to.
    """
    name_to_code: dict[str, str] = {}
    for entry in entries.values():
        if "en" in entry.labels:
            name_to_code.setdefault(slug(entry.labels["en"]), entry.hexcode)
    for pkg in style_dirs.values():
        for code, name in _chars(pkg).items():
            name_to_code.setdefault(name, normalize_hexcode(code))

    icons: list[Icon] = []
    stats: dict[str, dict[str, int]] = {}
    for style, pkg in style_dirs.items():
        data = json.loads((pkg / "icons.json").read_text())
        table, aliases = data["icons"], data.get("aliases", {})
        dw, dh = data.get("width", 16), data.get("height", 16)
        chars = _chars(pkg)
        pairs = [(normalize_hexcode(c), n) for c, n in chars.items()]
        # then by name: every icon of a set without chars.json, and the icons a chars.json leaves out
        # (Iconify lists no aliases there: e.g. fluent-emoji-flat's flipped "backhand-index-pointing-right")
        in_chars = set(chars.values())
        by_name = [
            (name_to_code[n], n) for n in [*table, *aliases] if n in name_to_code and n not in in_chars
        ]
        joined: dict[str, Icon] = {}
        parents: set[str] = set()
        n_by_name = 0
        for i, (code, name) in enumerate([*pairs, *by_name]):
            entry = entries.get(code)
            if entry is None or code in joined:
                continue
            icon = _resolve(table, aliases, name)
            if icon is None or icon.get("hidden"):
                continue
            joined[code] = Icon(style, name, _svg(icon, dw, dh), entry)
            parents.add(icon["parent"])
            n_by_name += i >= len(pairs)
        stats[style] = {
            "icons": len(table),
            "joined": len(joined),
            "joined_by_name": n_by_name,
            "dropped": len([n for n in table if n not in parents]),
        }
        icons.extend(sorted(joined.values(), key=lambda i: i.entry.hexcode))
    return icons, stats


def load_holdout(path: Path) -> set[tuple[str, str]]:
    """The held-out (base hexcode, style) pairs of a `hexcode<TAB>style[<TAB>label]` file (header optional).
    A style the data does not know is an error: the pair would otherwise be trained on, unnoticed."""
    from unclip.data.sources import STYLES

    pairs = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = [f.strip() for f in line.split("\t")]
        if not line.strip() or (n == 1 and fields[0].lower() == "hexcode"):
            continue
        if len(fields) < 2 or fields[1].lower() not in STYLES:
            raise ValueError(f"{path}:{n}: expected 'hexcode<TAB>style' with a style of {', '.join(STYLES)}: {line!r}")
        pairs.add((base_hexcode(fields[0]), fields[1].lower()))  # a pair holds out every skin tone of the emoji
    return pairs


def count_by(icons: list[Icon], key) -> dict[str, int]:
    return dict(Counter(key(i) for i in icons))
