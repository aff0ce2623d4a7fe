"""Measure the content policy on a labelled prompt set, the watermark's survival and the policy's latency.

    .venv/bin/python bench/safety_eval.py                          # tests/data/safety_prompts.csv
    .venv/bin/python bench/safety_eval.py --prompts other.csv      # an independent set (same columns)
    .venv/bin/python bench/safety_eval.py --json out.json --errors  # also list the misclassified rows
    .venv/bin/python bench/safety_eval.py --prompts tests/data/policy_set.csv --split test --no-watermark
    .venv/bin/python bench/safety_eval.py --emoji-requests --no-prompts --no-watermark  # harmless emoji asks

CSV columns: text, label (block|allow), category (policy category for block rows), variant
(plain|obfuscated|multilingual|emoji), lang. Only text and label are required.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}% ({a}/{b})" if b else "   n/a"


def eval_prompts(path: Path, show_errors: bool, split: str | None = None) -> dict[str, Any]:
    from unclip.safety.policy import ContentPolicy

    policy = ContentPolicy.load()
    t0 = time.perf_counter()
    policy.warm_up()
    warm = time.perf_counter() - t0
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if split:  # e.g. the policy set's `test` part, never tuned on
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise SystemExit(f"{path} has no rows with split={split!r}")
    per_lang_block: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_lang_allow: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_variant_block: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_variant_allow: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    right_cat = [0, 0]
    errors: list[tuple[str, str, str, str]] = []
    latencies: list[float] = []
    clf_latencies: list[float] = []
    for row in rows:
        text, label = row["text"], row["label"].strip().lower()
        variant = (row.get("variant") or "plain").strip() or "plain"
        lang = (row.get("lang") or "?").strip() or "?"
        policy._cache.clear()
        t = time.perf_counter()
        d = policy.check(text)
        latencies.append((time.perf_counter() - t) * 1000)
        if d.used_classifier:
            clf_latencies.append(latencies[-1])
        if label == "block":
            cat = (row.get("category") or "?").strip()
            per_cat[cat][1] += 1
            per_variant_block[variant][1] += 1
            per_lang_block[lang][1] += 1
            if d.flagged:
                per_cat[cat][0] += 1
                per_variant_block[variant][0] += 1
                per_lang_block[lang][0] += 1
                right_cat[1] += 1
                right_cat[0] += int(bool(d.categories.get(cat)))
            else:
                errors.append(("missed", cat, text, d.reason))
        else:
            per_variant_allow[variant][1] += 1
            per_lang_allow[lang][1] += 1
            if d.flagged:
                per_variant_allow[variant][0] += 1
                per_lang_allow[lang][0] += 1
                errors.append(("false positive", str(d.category), text, "; ".join(d.matches)))
    blocked = sum(v[0] for v in per_cat.values())
    n_block = sum(v[1] for v in per_cat.values())
    fps = sum(v[0] for v in per_variant_allow.values())
    n_allow = sum(v[1] for v in per_variant_allow.values())
    print(f"prompt set: {path} ({len(rows)} rows: {n_block} block, {n_allow} allow)")
    print(f"policy warm-up (model load + exemplar embeddings): {warm:.1f} s\n")
    print("block rate per category")
    for cat in sorted(per_cat):
        print(f"  {cat:14s} {_pct(*per_cat[cat])}")
    print(f"  {'ALL':14s} {_pct(blocked, n_block)}")
    print(f"  right category among blocked: {_pct(*right_cat)}")
    print("block rate per variant")
    for v in sorted(per_variant_block):
        print(f"  {v:14s} {_pct(*per_variant_block[v])}")
    print("false-positive rate on benign prompts, per variant")
    for v in sorted(per_variant_allow):
        print(f"  {v:14s} {_pct(*per_variant_allow[v])}")
    print(f"  {'ALL':14s} {_pct(fps, n_allow)}")
    if len(per_lang_block) > 1:
        print("per language: block rate | false-positive rate")
        for lang in sorted(set(per_lang_block) | set(per_lang_allow)):
            print(f"  {lang:5s} {_pct(*per_lang_block[lang])} | {_pct(*per_lang_allow[lang])}")
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(
        f"policy latency per prompt (uncached): median {p50:.1f} ms, p95 {p95:.1f} ms, max {lat[-1]:.1f} ms"
    )
    if clf_latencies:
        cl = sorted(clf_latencies)
        print(
            f"  of which {len(cl)} prompts ran the classifier: median {statistics.median(cl):.1f} ms, "
            f"p95 {cl[int(0.95 * (len(cl) - 1))]:.1f} ms"
        )
    policy.check(rows[0]["text"])
    t = time.perf_counter()
    for _ in range(200):
        policy.check(rows[0]["text"])
    cached = (time.perf_counter() - t) / 200 * 1000
    print(f"policy latency for a repeated prompt (cached): {cached:.3f} ms")
    if show_errors:
        print("\nmisclassified rows")
        for kind, cat, text, why in errors:
            print(f"  [{kind}] {cat}: {text!r}  {why}")
    return {
        "rows": len(rows),
        "block_rate": {c: v[0] / v[1] for c, v in per_cat.items() if v[1]},
        "block_rate_all": blocked / n_block if n_block else None,
        "block_rate_variant": {c: v[0] / v[1] for c, v in per_variant_block.items() if v[1]},
        "false_positive_rate": fps / n_allow if n_allow else None,
        "false_positive_variant": {c: v[0] / v[1] for c, v in per_variant_allow.items() if v[1]},
        "block_rate_lang": {c: v[0] / v[1] for c, v in per_lang_block.items() if v[1]},
        "false_positive_lang": {c: v[0] / v[1] for c, v in per_lang_allow.items() if v[1]},
        "latency_ms": {
            "median": p50,
            "p95": p95,
            "cached": cached,
            "classifier_median": statistics.median(clf_latencies) if clf_latencies else None,
        },
        "warm_up_s": warm,
    }


def eval_watermark(sizes: list[int], trials: int) -> dict[str, Any]:
    """`unclip.evaluation.watermark.watermark_report` on smooth synthetic emoji-like images at each size (the
    model's own images: `unclip eval watermark`), plus encode and verify times."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    from unclip.evaluation.watermark import watermark_report
    from unclip.safety.provenance import encode_png, verify

    rng = np.random.default_rng(0)

    def sample(size: int) -> Image.Image:
        # blurred random colour fields with a few flat shapes
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.BICUBIC)
        d = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = rng.integers(0, size // 2, 2)
            r = int(rng.integers(size // 8, size // 3))
            d.ellipse([x0, y0, x0 + r, y0 + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        return img.filter(ImageFilter.GaussianBlur(1))

    reports = {size: watermark_report([sample(size) for _ in range(trials)]) for size in sizes}
    print("\nwatermark survival (payload read back from the copy alone)")
    print("  copy                        " + "".join(f"{s:>8d}px" for s in sizes))
    for name in reports[sizes[0]]["survival"]:
        print(f"  {name:28s}" + "".join(f"{reports[s]['survival'][name]:9.0f}%" for s in sizes))
    print("  PSNR (min)                  " + "".join(f"{reports[s]['psnr_min']:8.1f}dB" for s in sizes))
    print("  false matches               " + "".join(f"{reports[s]['false_matches']:>10s}" for s in sizes))
    times = {}
    for size in sizes:
        img = sample(size)
        t = time.perf_counter()
        png = encode_png(img, {"seed": 1})
        enc = time.perf_counter() - t
        t = time.perf_counter()
        verify(png)
        times[size] = {"encode_ms": 1000 * enc, "verify_ms": 1000 * (time.perf_counter() - t)}
    cells = "".join(f"{t['encode_ms']:5.0f}/{t['verify_ms']:<4.0f}" for t in times.values())
    print("  encode / verify ms          " + cells)
    return {
        "reports": {str(s): r for s, r in reports.items()},
        "times": {str(s): t for s, t in times.items()},
    }


def eval_emoji_requests(cache: Path, share: float, show_errors: bool, seed: int = 0) -> dict[str, Any]:
    """How many harmless requests for an emoji the policy refuses: every emoji's name in every language of the
    evaluation phrasings (`unclip.evaluation.prompts`, never trained on), `share` of them, with a style name."""
    import random

    from unclip.data.emoji import load_emojibase
    from unclip.data.sources import EMOJIBASE, STYLES, fetch
    from unclip.evaluation.prompts import PHRASINGS, render, style_names
    from unclip.safety.policy import ContentPolicy, default_policy_path

    rng = random.Random(seed)
    entries = [e for e in load_emojibase(fetch(EMOJIBASE, cache)).values() if not e.tone]
    prompts = [
        (lang, render(rng.choice(PHRASINGS[lang]), e.labels[lang], rng.choice(style_names(rng.choice(STYLES), lang))))
        for e in entries
        for lang in PHRASINGS
        if lang in e.labels and rng.random() < share
    ]
    policy = ContentPolicy.from_file(default_policy_path())
    refused: dict[str, int] = defaultdict(int)
    asked: dict[str, int] = defaultdict(int)
    for lang, text in prompts:
        asked[lang] += 1
        if (d := policy.check(text)).flagged:
            refused[lang] += 1
            if show_errors:
                print(f"  refused ({d.category}): {text}")
    print(f"harmless emoji requests refused: {_pct(sum(refused.values()), len(prompts))}")
    for lang in sorted(asked):
        print(f"  {lang:4s} {_pct(refused[lang], asked[lang])}")
    return {"asked": len(prompts), "refused": sum(refused.values()), "by_language": dict(refused)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=Path, default=ROOT / "tests" / "data" / "safety_prompts.csv")
    ap.add_argument("--errors", action="store_true", help="list misclassified prompts")
    ap.add_argument("--split", help="only rows of this split (tests/data/policy_set.csv: tune or test)")
    ap.add_argument("--no-watermark", action="store_true")
    ap.add_argument("--no-prompts", action="store_true")
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--emoji-requests", action="store_true", help="also ask for every emoji in ten languages")
    ap.add_argument("--emoji-share", type=float, default=0.35, help="share of the (emoji, language) pairs asked")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "npm", help="npm cache (emojibase)")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if not args.no_prompts:
        out["policy"] = eval_prompts(args.prompts, args.errors, args.split)
    if args.emoji_requests:
        out["emoji_requests"] = eval_emoji_requests(args.cache, args.emoji_share, args.errors)
    if not args.no_watermark:
        out["watermark"] = eval_watermark([int(s) for s in args.sizes.split(",")], args.trials)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
