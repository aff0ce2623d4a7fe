"""Compare content-policy classifier recipes on our own prompt sets, each held out in turn.

    .venv/bin/python bench/policy_heldout.py                        # the shipped recipe (about 10 minutes)
    .venv/bin/python bench/policy_heldout.py --wrap-fraction 0.3 --mix probabilities --share 0.5
    .venv/bin/python bench/policy_heldout.py --share 0.5,0.65,0.8   # one fit, several n-gram shares
    .venv/bin/python bench/policy_heldout.py --errors misread.csv   # also list the prompts it misreads

The policy set's tune part tells recipes apart by a prompt or two. Here each of the labelled sets below is
scored by a classifier fitted on everything else `unclip policy train` uses (the other sets, their wrapped
copies, exemplars, emoji captions), never on a row of the held-out set, its wrapped copy or anything within
cosine `--dedup` of it; the policy set's test part is never read. The scores are pooled and one operating
point is chosen as the trainer does (the most refusals at most `--max-fpr` false positives), so a recipe's
figures say how it reads kinds of prompts it has not seen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# policy_train_6 is trained on but, by default, not held out: the figures stay comparable with earlier ones
HELD_OUT = ("policy_set", "policy_train", "policy_train_2", "policy_train_3", "policy_train_4", "policy_train_5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wrap-fraction", type=float, default=1.0, help="harmless rows also trained wrapped")
    ap.add_argument("--mix", choices=("logits", "probabilities"), default="logits", help="how the readers mix")
    ap.add_argument("--share", default="0.65", help="n-gram shares to report, comma-separated")
    ap.add_argument("--max-fpr", default="0.03,0.02,0.015,0.01", help="false-positive budgets, comma-separated")
    ap.add_argument("--held-out", default=",".join(HELD_OUT), help="sets held out in turn (tests/data names)")
    ap.add_argument("--dedup", type=float, default=0.92)
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "npm", help="npm cache (emojibase)")
    ap.add_argument("--errors", type=Path, help="write the misread prompts (first share, first budget) to this CSV")
    args = ap.parse_args()

    from unclip.cli.safety import DATA, TRAINING_SETS
    from unclip.data.sources import EMOJIBASE, fetch
    from unclip.safety.classifier import decide, mix_readers
    from unclip.safety.embedding import get_embedder
    from unclip.safety.policy import ContentPolicy, default_policy_path
    from unclip.training.policy import (
        MLPSettings,
        NgramSettings,
        choose_operating_point,
        clean_texts,
        features,
        fit_classifier,
        training_rows,
    )

    policy = ContentPolicy.from_file(default_policy_path())
    sets = [DATA / f"{name}.csv" for name in TRAINING_SETS]
    rows, held_out = training_rows(sets, policy, fetch(EMOJIBASE, args.cache), wrap_fraction=args.wrap_fraction)
    embedder = get_embedder()
    x = features([r.text for r in rows], embedder)
    usable = (x @ features(held_out, embedder).T).max(axis=1) < args.dedup
    texts = clean_texts([r.text for r in rows])
    y = np.array([r.label for r in rows])
    root = np.array([r.source.split("+")[0] for r in rows])
    copy = np.array(["+" in r.source for r in rows])

    net = np.full((len(rows), y.max() + 1), np.nan)
    grams = np.full_like(net, np.nan)
    for name in args.held_out.split(","):
        scored = np.flatnonzero((root == name) & ~copy & usable)
        fit_on = np.flatnonzero(usable & (root != name))
        fit_on = fit_on[(x[fit_on] @ x[scored].T).max(axis=1) < args.dedup]
        clf = fit_classifier(
            x[fit_on], y[fit_on], MLPSettings(), 0, 1e-4, [texts[i] for i in fit_on], NgramSettings(share=0.5)
        )
        net[scored] = clf.logits(x[scored])
        grams[scored] = clf.ngram_logits([texts[i] for i in scored])
        print(f"{name}: {len(scored)} prompts scored, fitted on {len(fit_on)} rows", flush=True)

    scored = ~np.isnan(net[:, 0])
    blocked = y > 0
    checks = [policy.rule_check(r.text) for r in rows]
    rule = np.array([c[0] is not None for c in checks])
    allow_listed = np.array([c[1] for c in checks])
    variant = np.array([r.variant for r in rows])
    budgets = [float(f) for f in args.max_fpr.split(",")]
    shares = [float(s) for s in args.share.split(",")]
    for share in shares:
        harm = 1 - mix_readers(net[scored], grams[scored], share, args.mix)[:, 0]
        b, r, a = blocked[scored], rule[scored], allow_listed[scored]
        points = [choose_operating_point(harm, b, r, a, f) for f in budgets]
        print(
            f"\n{args.mix} averaged, n-gram share {share}, harmless rows wrapped: {args.wrap_fraction:.0%}; "
            f"{int(scored.sum())} prompts"
        )
        for f, (threshold, _veto, recall, fpr) in zip(budgets, points, strict=True):
            print(f"  <= {f:.1%} false positives: {recall:.1%} refused ({fpr:.2%}, threshold {threshold})")
        threshold, veto = points[0][:2]
        pred = np.array([decide(h, hit, al, threshold, veto) for h, hit, al in zip(harm, r, a, strict=True)])
        if args.errors and share == shares[0]:
            _write_errors(args.errors, [rows[i] for i in np.flatnonzero(scored)], harm, pred, b)
        print("  at the first budget, refused / false positives by held-out set and by kind:")
        for name in args.held_out.split(","):
            m = root[scored] == name
            print(f"    {name:16s} {pred[m & b].mean():6.1%} / {pred[m & ~b].mean():5.1%}")
        for kind in sorted(set(variant[scored])):
            m = variant[scored] == kind
            refused = f"{pred[m & b].mean():6.1%}" if (m & b).any() else "     -"
            allowed = f"{pred[m & ~b].mean():5.1%}" if (m & ~b).any() else "    -"
            print(f"    {kind:16s} {refused} / {allowed}")


def _write_errors(path: Path, rows: list, harm: np.ndarray, pred: np.ndarray, blocked: np.ndarray) -> None:
    import csv

    from unclip.training.policy import CLASSES

    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label", "variant", "lang", "set", "harm", "error"])
        for row, h, p, b in zip(rows, harm, pred, blocked, strict=True):
            if p != b:
                error = "missed" if b else "false positive"
                out.writerow([row.text, CLASSES[row.label], row.variant, row.lang, row.source, f"{h:.3f}", error])
    print(f"  misread prompts: {path}")


if __name__ == "__main__":
    main()
