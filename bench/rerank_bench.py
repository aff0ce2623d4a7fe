"""What reranking costs: `generate(n, size)` wall time for each number of prior and decoded candidates,
interleaved, median of the repeats after a warm-up, and the ratio to one of each.

    .venv/bin/python bench/rerank_bench.py --settings 1x1,4x1,4x2,4x4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from unclip import BUNDLED_MODEL_DIR
from unclip.engine import Engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(BUNDLED_MODEL_DIR))
    ap.add_argument("--settings", default="1x1,4x1,4x2,4x4", help="PRIORxDECODED candidates, comma-separated")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    engine = Engine.load(args.model, device="cpu")
    engine.generate("warm up", n=args.n, size=args.size, seed=1)
    times: dict[tuple[int, ...], list[float]] = {s: [] for s in settings}
    for r in range(args.repeats):
        for s in settings:
            engine.prior_candidates, engine.decode_candidates = s
            t = time.perf_counter()
            engine.generate("a red apple", n=args.n, size=args.size, seed=10 + r)
            times[s].append(time.perf_counter() - t)
    base = statistics.median(times[settings[0]])
    first = "x".join(map(str, settings[0]))
    print(f"| prior candidates | decoded candidates | n={args.n} at {args.size} px, s | × {first} |")
    print("| ---: | ---: | ---: | ---: |")
    for s in settings:
        m = statistics.median(times[s])
        print(f"| {s[0]} | {s[1]} | {m:.2f} | {m / base:.2f} |")


if __name__ == "__main__":
    main()
