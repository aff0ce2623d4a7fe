"""How the content policy holds when a prompt is disguised, and what disguising harmless prompts costs.

    .venv/bin/python bench/policy_obfuscation.py              # 300 refusals, every harmless English row
    .venv/bin/python bench/policy_obfuscation.py --refusals 0  # all of them (about 2,000; a few minutes)

Takes English refusals from our own labelled sets (never the policy set's test part) that the policy refuses
as written, disguises each in one way at a time (leetspeak, spaced or dotted letters, look-alike letters,
words joined without spaces...), and reports the share still refused. Then joins the words of the harmless
English rows the policy allows as written (and doubles letters in them), and reports the share refused:
splitting glued words (or reading doubled letters once) must not turn harmless prompts into refusals.
Deterministic (seeded).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SETS = ("policy_train", "policy_train_2", "policy_train_3", "policy_train_4", "policy_train_5", "policy_train_6")
LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "$5", "t": "7", "l": "1", "g": "9", "b": "8"}
LOOKALIKES = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і", "s": "ѕ", "h": "һ"}
SMALL = {"a", "an", "the", "of", "in", "on", "at", "with", "and", "to", "for", "by", "from", "my", "his", "her"}


def disguises(rng: random.Random) -> dict[str, Callable[[str], str]]:
    def some_words(text: str, f: Callable[[str], str], k: int | None = None) -> str:
        words = text.split()
        content = [i for i, w in enumerate(words) if w.lower() not in SMALL and len(w) > 3]
        for i in content if k is None else rng.sample(content, min(k, len(content))):
            words[i] = f(words[i])
        return " ".join(words)

    def leet(p: float) -> Callable[[str], str]:
        return lambda w: "".join(rng.choice(LEET[c]) if c in LEET and rng.random() < p else c for c in w)

    def glue(sep: str) -> Callable[[str], str]:
        return lambda t: sep.join(t.split())

    return {
        "leetspeak, every word": lambda t: some_words(t, leet(0.7)),
        "leetspeak, one word": lambda t: some_words(t, leet(1.0), 1),
        "dotted letters (k.i.l.l)": lambda t: some_words(t, ".".join, 1),
        "spaced letters (k i l l)": lambda t: some_words(t, " ".join, 1),
        "starred letters (k*i*l*l)": lambda t: some_words(t, "*".join, 1),
        "zero-width characters": lambda t: some_words(t, "\u200b".join, 1),
        "look-alike letters, one word": lambda t: some_words(t, lambda w: "".join(LOOKALIKES.get(c, c) for c in w), 1),
        "look-alike letters, some": lambda t: "".join(LOOKALIKES.get(c, c) if rng.random() < 0.3 else c for c in t),
        "random case": lambda t: "".join(c.upper() if rng.random() < 0.5 else c for c in t),
        "accents": lambda t: t.translate(str.maketrans("aeiou", "àéîõü")),
        "fullwidth letters": lambda t: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t),
        "a vowel masked (n*ked)": lambda t: some_words(
            t, lambda w: w[0] + "".join("*" if c in "aeiou" else c for c in w[1:-1]) + w[-1], 1
        ),
        "doubled letters": lambda t: some_words(
            t, lambda w: "".join(c * 2 if c.isalpha() and rng.random() < 0.3 else c for c in w)
        ),
        "no spaces": glue(""),
        "underscores": glue("_"),
        "plus signs": glue("+"),
        "dots between words": glue("."),
        "hyphens between words": glue("-"),
        "camel case": lambda t: "".join(w[:1].upper() + w[1:] for w in t.split()),
        "hashtag of the first words": lambda t: "#" + "".join(t.split()[:4]) + " " + " ".join(t.split()[4:]),
    }


def read_rows(label: str) -> list[str]:
    rows = []
    for name in SETS:
        with (ROOT / "tests" / "data" / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                if r["label"] == label and (r.get("lang") or "en") == "en" and r.get("split") != "test":
                    rows.append(r["text"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refusals", type=int, default=300, help="refusals to disguise (0: all)")
    ap.add_argument("--examples", type=int, default=2, help="missed prompts to print per disguise")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from unclip.safety.policy import ContentPolicy

    policy = ContentPolicy.load()
    policy.warm_up()
    rng = random.Random(args.seed)
    refusals = [t for t in read_rows("block") if policy.check(t).flagged]
    rng.shuffle(refusals)
    refusals = refusals[: args.refusals or None]
    print(f"{len(refusals)} English refusals that the policy refuses as written; still refused when disguised:")
    for name, disguise in disguises(rng).items():
        missed = [d for d in map(disguise, refusals) if not policy.check(d).flagged]
        print(f"  {name:30s} {1 - len(missed) / len(refusals):6.1%}  {missed[: args.examples]}")

    harmless = [t for t in read_rows("allow") if not policy.check(t).flagged]
    print(f"\n{len(harmless)} harmless English prompts that the policy allows as written; refused when joined:")
    for name in (
        "no spaces", "underscores", "hyphens between words", "camel case", "doubled letters",
        "hashtag of the first words",
    ):
        disguise = disguises(rng)[name]
        refused = [d for d in map(disguise, harmless) if policy.check(d).flagged]
        print(f"  {name:30s} {len(refused) / len(harmless):6.1%}  {refused[: args.examples]}")


if __name__ == "__main__":
    main()
