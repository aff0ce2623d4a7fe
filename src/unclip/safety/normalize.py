"""Normalise prompts against obfuscation before the policy looks at them.

`normalize(text)` returns a `Normalized` with several views of the same text:

- ``plain``: NFKC, English words in camel case set apart (``NakedWomanOnBed``), case-folded, zero-width and
  control characters removed, diacritics stripped from Latin/Greek/Cyrillic letters, emoji pictographs
  removed, whitespace collapsed. Non-Latin scripts are kept,
  so rule lists written in other languages match here.
- ``clean``: ``plain`` plus de-obfuscation inside words: homoglyphs in mixed-script words mapped to Latin,
  leetspeak in words that mix letters and digits/symbols (``k1ll``, ``n@ked``), punctuation inside words
  removed (``k.i.l.l``, ``s-e-x``), English words joined by separators set apart (``a_naked_woman``,
  ``a-naked-woman-on-a-bed``; `unclip.safety.wordsplit`), runs of single spaced letters joined (``p o r n``)
  and letters repeated four or more times squeezed. This is what the semantic classifier reads.
- ``segmented``: ``clean`` with a prompt written as one long word, any very long word, or a hashtag, read as
  the English words it is made of (``howtomakeapipebomb``, ``#hatejews``), and words with doubled letters as
  the English word they stand for (``kiill``), where they read so; else ``clean``. The policy's classifier
  reads it as well as ``clean`` and keeps the more harmful reading.
- ``skeleton``: ``clean`` with every homoglyph mapped to Latin (whole words too), used for English rules.
- ``compact``: ``skeleton`` with everything but letters and digits removed, for the few distinctive terms
  that the policy marks as ``substring`` (``porn`` hidden in ``p_o_r_n_o_g_r_a_p_h_y``).

Every rule term in the policy goes through the same pipeline, so rule lists can be written naturally
(with accents, in any case) and still match.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from unclip.safety.wordsplit import english_reading, joined_words, split_camel

__all__ = ["Normalized", "normalize", "normalize_term", "strip_emoji", "strip_marks"]

# Zero-width and invisible formatting characters (also soft hyphen, word joiner, BOM, bidi controls).
_INVISIBLE = dict.fromkeys(
    [
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x180E,
        0x200B,
        0x200C,
        0x200D,
        0x200E,
        0x200F,
        0x202A,
        0x202B,
        0x202C,
        0x202D,
        0x202E,
        0x2060,
        0x2061,
        0x2062,
        0x2063,
        0x2064,
        0x2066,
        0x2067,
        0x2068,
        0x2069,
        0x206A,
        0x206B,
        0x206C,
        0x206D,
        0x206E,
        0x206F,
        0x3164,
        0xFEFF,
        0xFFA0,
        0xFE0E,
        0xFE0F,
    ]
)

# Confusable letters from other scripts (and a few symbols) that look like Latin letters.
_HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "ѕ": "s",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ԁ": "d",
    "ɡ": "g",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    "п": "n",
    "г": "r",
    "ь": "b",
    "з": "3",
    "ч": "4",
    "ш": "w",
    "и": "u",
    "д": "d",
    "л": "n",
    # Greek
    "α": "a",
    "β": "b",
    "γ": "y",
    "δ": "d",
    "ε": "e",
    "ζ": "z",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "μ": "u",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "σ": "o",
    "ς": "s",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ω": "w",
    "ϲ": "c",
    # Latin look-alikes and IPA
    "ı": "i",
    "ȷ": "j",
    "ł": "l",
    "ø": "o",
    "đ": "d",
    "ħ": "h",
    "ŀ": "l",
    "ɑ": "a",
    "ɩ": "i",
    "ɪ": "i",
    "ʀ": "r",
    "ʏ": "y",
    "ᴀ": "a",
    "ʙ": "b",
    "ᴄ": "c",
    "ᴅ": "d",
    "ᴇ": "e",
    "ɢ": "g",
    "ʜ": "h",
    "ᴊ": "j",
    "ᴋ": "k",
    "ʟ": "l",
    "ᴍ": "m",
    "ɴ": "n",
    "ᴏ": "o",
    "ᴘ": "p",
    "ꜱ": "s",
    "ᴛ": "t",
    "ᴜ": "u",
    "ᴠ": "v",
    "ᴡ": "w",
    "ᴢ": "z",
    "ß": "ss",
    "æ": "ae",
    "œ": "oe",
    "þ": "th",
}

# Leetspeak, applied only inside words that also contain letters.
_LEET: dict[str, str] = {
    "0": "o",
    "1": "i",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
    "+": "t",
    "€": "e",
    "£": "l",
    "¥": "y",
    "(": "c",
    "<": "c",
}
_LEET_ALT = {**_LEET, "1": "l", "!": "l"}

# Characters people put inside words to break them up.
_INNER_PUNCT = "._-*'`\"~^,:;/\\=#%&?()[]{}<>|+!@$"
# Punctuation that merely ends or opens a word ("bomb!", "(knife)"), stripped before leetspeak is read.
_EDGE_PUNCT = ".,;:!?\"'`()[]{}<>"


def _is_emoji(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or 0x1F1E6 <= cp <= 0x1F1FF
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or cp in (0x20E3, 0x2122, 0x2139, 0x3030, 0x303D, 0x3297, 0x3299, 0x00A9, 0x00AE)
        or 0x2190 <= cp <= 0x21FF
        or 0x2300 <= cp <= 0x23FF
        or 0x25A0 <= cp <= 0x25FF
    )


def strip_emoji(text: str) -> str:
    """Replace emoji pictographs (and flag/keycap/tag sequences) with spaces."""
    return "".join(" " if _is_emoji(ch) else ch for ch in text)


def _latin_like(ch: str) -> bool:
    cp = ord(ch)
    return cp < 0x0530 or 0x1D00 <= cp <= 0x1FFF  # Latin, IPA, Greek, Cyrillic and their extensions


def strip_marks(text: str) -> str:
    """Remove accents from Latin, Greek and Cyrillic letters (keeps marks that Indic/Arabic scripts need)."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.category(ch) == "Mn" and out and _latin_like(out[-1]):
            continue  # an accent on a Latin/Greek/Cyrillic letter: drop it; keep Indic/Arabic marks
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _base_clean(text: str) -> str:
    text = split_camel(unicodedata.normalize("NFKC", text))
    text = text.translate(_INVISIBLE)
    text = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zs", "Zl", "Zp") else ch
        for ch in text
        if unicodedata.category(ch) != "Cf" or _is_emoji(ch)
    )
    text = strip_emoji(text).casefold()
    text = strip_marks(text)
    return re.sub(r"\s+", " ", text).strip()


def _is_latin_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _map_homoglyphs(word: str, force: bool, latin_text: bool = False) -> str:
    """Confusables mapped to Latin: always with `force`; else in a word that mixes them with Latin letters,
    or in a word made only of them inside Latin text (`latin_text`: "a ѕеху nurse", not "собака в снегу")."""
    if not force:
        has_latin = any(_is_latin_letter(c) for c in word)
        has_confusable = any(c in _HOMOGLYPHS for c in word)
        disguised = latin_text and has_confusable and all(c in _HOMOGLYPHS for c in word if c.isalpha())
        if not (has_latin and has_confusable) and not disguised:
            return word
    return "".join(_HOMOGLYPHS.get(c, c) for c in word)


def _latin_around(words: list[str]) -> list[bool]:
    """For each word: whether the rest of the text is written in Latin letters (at least three, and more
    than twice the letters of other scripts)."""
    counts = [
        (sum(_is_latin_letter(c) for c in w), sum(c.isalpha() and not _is_latin_letter(c) for c in w))
        for w in words
    ]
    latin, other = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return [latin - a >= 3 and latin - a > 2 * (other - b) for a, b in counts]


def _is_number_word(core: str) -> bool:
    """1st, 22nd, 3rd, 11th, 3d, 4k, 10px, 5pm, 1990s: a number with a unit or a correct ordinal ending."""
    m = re.fullmatch(r"(\d+)(st|nd|rd|th|d|k|px|s|x|am|pm|h|m|cm|mm|kg|g|mb|gb)?", core)
    if m is None:
        return False
    digits, unit = m.groups()
    if unit not in ("st", "nd", "rd", "th"):
        return True
    last = "th" if digits[-2:] in ("11", "12", "13") else {"1": "st", "2": "nd", "3": "rd"}.get(digits[-1], "th")
    return unit == last  # "3nd" is "end" in leetspeak, not an ordinal


def _deleet(word: str, table: dict[str, str]) -> str:
    """Map leetspeak runs that touch a letter: k1ll, n4z1, b00bs, $ex; leave 4, 3d, 1990s, covid-19 alone."""
    if sum(c.isalpha() for c in word) < 1 or not any(c in table for c in word):
        return word
    lead = len(word) - len(word.lstrip(_EDGE_PUNCT))
    trail = len(word.rstrip(_EDGE_PUNCT))
    head, core, tail = word[:lead], word[lead:trail], word[trail:]
    if not core or _is_number_word(core):
        return word
    out: list[str] = []
    i = 0
    while i < len(core):
        if core[i] in table:
            j = i
            while j < len(core) and core[j] in table:
                j += 1
            run = core[i:j]
            touches = (i > 0 and core[i - 1].isalpha()) or (j < len(core) and core[j].isalpha())
            out.append("".join(table[c] for c in run) if touches else run)
            i = j
        else:
            out.append(core[i])
            i += 1
    return head + "".join(out) + tail


def _join_inner_punct(word: str) -> str:
    # "k.i.l.l" -> "kill", "s-e-x" -> "sex"; keep leading/trailing punctuation out of it.
    inner = word.strip(_INNER_PUNCT)
    if not inner:
        return ""
    return "".join(c for c in inner if c not in _INNER_PUNCT)


def _join_spaced_letters(words: list[str]) -> list[str]:
    # "p o r n" / "k i l l" -> "porn" / "kill" (runs of three or more single characters).
    out: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if len(w) == 1 and w.isalnum():
            run.append(w)
            continue
        if len(run) >= 3:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if w:
            out.append(w)
    return out


def _squeeze(word: str) -> str:
    # "kiiiiill" -> "kill"; runs of exactly three stay ("kkk", "xxx"): rules also let letters repeat
    return re.sub(r"(.)\1{3,}", r"\1", word)


def _deobfuscate(plain: str, *, force_homoglyphs: bool, leet: dict[str, str]) -> str:
    words = []
    raws = plain.split(" ")
    for raw, latin_text in zip(raws, _latin_around(raws), strict=True):
        # words joined by separators, read before leetspeak ("a+cat": + is a leet t) and after ("n@ked_w0man")
        for piece in joined_words(_map_homoglyphs(raw, force_homoglyphs, latin_text)):
            for part in joined_words(_deleet(piece, leet)):
                w = _squeeze(_join_inner_punct(part) if any(c.isalnum() for c in part) else "")
                if w:
                    words.append(w)
    return " ".join(_join_spaced_letters(words))


@dataclass(frozen=True)
class Normalized:
    original: str
    plain: str
    clean: str
    skeleton: str
    skeleton_alt: str  # leetspeak read with 1/! as "l" rather than "i"
    compact: str
    segmented: str = ""  # clean, with glued words and doubled letters read as English words (or clean itself)

    def word_views(self) -> tuple[str, ...]:
        """Distinct views to match word rules against."""
        seen: dict[str, None] = {}
        for v in (self.plain, self.clean, self.skeleton, self.skeleton_alt, self.segmented or self.clean):
            seen.setdefault(v, None)
        return tuple(seen)


@lru_cache(maxsize=4096)
def normalize(text: str) -> Normalized:
    plain = _base_clean(text)
    # Punctuation-only separators in a spaced-out word ("p . o . r . n") are dropped before joining.
    clean = _deobfuscate(plain, force_homoglyphs=False, leet=_LEET)
    skeleton = _deobfuscate(plain, force_homoglyphs=True, leet=_LEET)
    skeleton_alt = _deobfuscate(plain, force_homoglyphs=True, leet=_LEET_ALT)
    compact = re.sub(r"[\W_]+", "", skeleton)
    tags = " ".join(w for w in plain.split(" ") if w.startswith("#"))
    hashtags = frozenset(_deobfuscate(tags, force_homoglyphs=False, leet=_LEET).split(" ") if tags else ())
    return Normalized(text, plain, clean, skeleton, skeleton_alt, compact, english_reading(clean, hashtags))


def normalize_term(term: str) -> str:
    """Normalise a rule term the way `plain` is normalised (terms are written without obfuscation)."""
    return _base_clean(term)
