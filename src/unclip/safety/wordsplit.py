"""English words written without spaces between them, or with letters doubled, for the prompt normaliser.

A prompt can hide its words by dropping the spaces: ``a_naked_woman``, ``a.naked.woman``, ``a+naked+woman``,
``a-naked-woman-on-a-bed``, ``NakedWomanOnBed``, ``howtomakeapipebomb``; or by doubling letters: ``kiill``.
Words are only read so when the pieces read as English words, judged by wordninja's unigram model (word
frequencies by rank, MIT): a word spelt out in pieces to hide it (``sui.cide``, ``pr.o.pa.gan.da``,
``cArIcaTuRE``) and the compounds of other languages (``küchenmesser``, which would come back as ``ku chen
messer``) stay as they are.

Costs are -log frequency per letter: English prompts read at 1.7-2.5, scraps of other words at 3 or more.
"""

from __future__ import annotations

import itertools
import re
from functools import cache

__all__ = ["english_reading", "joined_words", "load_word_model", "split_camel"]

# Characters that join whole words in place of spaces ("a_naked_woman", "a.naked.woman", "a+naked+woman")
_JOINERS = re.compile(r"[_+./|~]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")  # "ASuicideNote": A Suicide Note
_EDGE = ".,;:!?\"'`()[]{}<>#@"  # "#NakedWomanOnBed", "@a_naked_woman": a hashtag's or handle's words
#: a prompt written as one word of this many letters, or a word of `MIN_LONG` letters in any prompt, is
#: also read as the English words it may be made of
MIN_GLUED = 12
MIN_LONG = 16
#: a hashtag is words written without spaces by convention (#happybirthday): read as words from this length
MIN_HASHTAG = 6
#: the most a segmentation of glued letters may cost per letter and per word (English prompts: 1.5-2.5 and
#: 6-12; German and Dutch compounds: 2.7-3.7 and 11-13, "wasser pistol ene moji" 2.7 and 12.9)
MAX_GLUED_COST = 2.8
MAX_GLUED_WORD_COST = 12.0
#: words set apart by separators or capitals: the cost per letter, and the rarest word's cost unless there
#: are four words or more ("a.cat.on.a.mat": 3.5 and 11.9; "sui.cide": 3.7 and 13.9, "hit.ler" 12.9)
MAX_SPLIT_COST = 3.5
MAX_WORD_COST = 12.5
_UNKNOWN = 30.0
_DOUBLED = re.compile(r"(.)\1")
MAX_DOUBLED = 8  # doubled letters in one word read at most (2^8 spellings)


@cache
def _costs() -> dict[str, float]:
    import wordninja  # its word list loads on first use

    return wordninja.DEFAULT_LANGUAGE_MODEL._wordcost  # wordninja 2.0: -log frequency of each word


def load_word_model() -> None:
    """Load the word list now rather than on the first prompt that needs it (about 0.1 s)."""
    _costs()


def _cost_per_letter(words: list[str]) -> float:
    costs = _costs()
    return sum(costs.get(w, _UNKNOWN) for w in words) / max(sum(len(w) for w in words), 1)


def _read_as_words(pieces: list[str]) -> bool:
    """Whether pieces set apart by separators or capitals are English words rather than one word cut up.
    Numbers count as words of every language and are not judged."""
    if len(pieces) < 2:
        return False
    # "doctor's" and "trench-coat" are one word each, "axe,brain" two
    words = [w for p in pieces for w in re.sub(r"['-]", "", p.strip(_EDGE)).lower().split(",") if w]
    if not all(w.isascii() and (w.isalpha() or w.isdigit()) for w in words):
        return False
    words = [w for w in words if w.isalpha()]
    if sum(len(w) > 2 for w in words) < 2:  # "k.i.l.l", "s-e-x", "nu.de"
        return False
    rarest = max(_costs().get(w, _UNKNOWN) for w in words)
    return (rarest <= MAX_WORD_COST or len(words) >= 4) and _cost_per_letter(words) <= MAX_SPLIT_COST


def joined_words(token: str) -> list[str]:
    """The words of a token made of English words joined by separators ("a_naked_woman", "a.cat.on.a.mat",
    "a-naked-woman-on-a-bed"), else the token itself. One or two hyphens make a compound ("x-ray",
    "mother-in-law"), which stays one token."""
    core = token.strip(_EDGE)
    pieces = [p for p in _JOINERS.split(core) if p]
    if len(pieces) < 2 and token.count("-") >= 3:
        pieces = [p for p in core.split("-") if p]
    return pieces if _read_as_words(pieces) else [token]


def split_camel(text: str) -> str:
    """Words in camel case set apart ("NakedWomanOnBed": Naked Woman On Bed); one hump stays ("iPhone",
    "McDonald", "YouTube"), and so does text in random case ("cArIcaTuRE")."""
    out = []
    for token in text.split(" "):
        pieces = _CAMEL.sub(" ", token).split(" ")
        out.append(" ".join(pieces) if len(pieces) > 2 and _read_as_words(pieces) else token)
    return " ".join(out)


def _segment(word: str) -> list[str]:
    import wordninja

    words = wordninja.split(word)
    if len(words) < 2 or not all(len(w) > 1 or w in "ai" for w in words):
        return [word]
    per_word = sum(_costs().get(w, _UNKNOWN) for w in words) / len(words)
    return words if _cost_per_letter(words) <= MAX_GLUED_COST and per_word <= MAX_GLUED_WORD_COST else [word]


def _undouble(word: str) -> str:
    """The English word a word with letters doubled to hide it stands for ("kiill", "tteeariing"): the most
    common one that some of its doubled letters, taken once, spell; else the word itself."""
    costs = _costs()
    runs = [m.span() for m in _DOUBLED.finditer(word)]
    if word in costs or not runs or len(runs) > MAX_DOUBLED:
        return word
    best, best_cost = word, MAX_WORD_COST
    for once in itertools.product((True, False), repeat=len(runs)):
        pieces, at = [], 0
        for (start, end), single in zip(runs, once, strict=True):
            pieces.append(word[at : start + 1] if single else word[at:end])
            at = end
        candidate = "".join(pieces) + word[at:]
        if costs.get(candidate, _UNKNOWN) <= best_cost:
            best, best_cost = candidate, costs[candidate]
    return best


def english_reading(text: str, hashtags: frozenset[str] = frozenset()) -> str:
    """`text` as English words, where its words read so: a prompt written as one long word
    ("howtomakeapipebomb") or any very long word, and the words of `text` that were hashtags ("#hatejews"),
    as the words they are made of; a word with letters doubled ("tthhrroughh"), as the word."""
    words = text.split(" ")
    least = MIN_GLUED if len(words) == 1 else MIN_LONG
    out = []
    for w in words:
        if not (w.isascii() and w.isalpha()):
            out.append(w)
        elif len(w) >= least or (len(w) >= MIN_HASHTAG and w in hashtags):
            out.extend(_segment(w))
        else:
            out.append(_undouble(w) if len(w) >= 4 else w)
    return " ".join(out)
