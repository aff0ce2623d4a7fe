"""Compatible requests in one pass (`Engine.generate_batch`) against one by one, interleaved, same seeds:
seconds, throughput ratio and the largest pixel difference.

    .venv/bin/python bench/batch_bench.py --sizes 2,4,8
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from unclip import BUNDLED_MODEL_DIR
from unclip.engine import Engine

PROMPTS = ["a red apple", "a hamburger", "a smiling cat", "a rocket"]


def alone(engine: Engine, prompts: list[str], seeds: list[int], px: int) -> tuple[float, list]:
    t = time.perf_counter()
    out = [engine.generate(p, n=1, size=px, seed=s)[0] for p, s in zip(prompts, seeds, strict=True)]
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(BUNDLED_MODEL_DIR))
    ap.add_argument("--sizes", default="2,4,8", help="requests per pass")
    ap.add_argument("--px", type=int, default=256)
    args = ap.parse_args()
    engine = Engine.load(args.model, device="cpu")
    engine.generate("warm up", n=1, size=args.px, seed=1)
    print("| requests | one by one s | one pass s | throughput | max pixel difference |")
    print("|---|---|---|---|---|")
    for k in (int(x) for x in args.sizes.split(",")):
        prompts, seeds = (PROMPTS * k)[:k], [10 + i for i in range(k)]

        first, singles = alone(engine, prompts, seeds, args.px)
        t = time.perf_counter()
        batch = engine.generate_batch(prompts, [1] * k, seeds, size=args.px)
        together = time.perf_counter() - t
        second, _ = alone(engine, prompts, seeds, args.px)
        seq = (first + second) / 2
        diff = max(
            int(np.abs(np.asarray(a, np.int16) - np.asarray(b[0], np.int16)).max())
            for a, b in zip(singles, batch, strict=True)
        )
        print(f"| {k} | {seq:.2f} | {together:.2f} | {seq / together:.2f}× | {diff} |", flush=True)


if __name__ == "__main__":
    main()
