"""The engine against the stock diffusers Kandinsky 2.2 pipelines on the same weights: latency per size and
n, images/s, peak RSS, the speed ratio, and CLIP retrieval of the outputs (see unclip.engine.bench).

    .venv/bin/python bench/engine_bench.py                                  # 256 px, n = 1 and 4, 2 repeats
    .venv/bin/python bench/engine_bench.py --sizes 256,512,1024 --out docs/performance.md
    .venv/bin/python bench/engine_bench.py --model path/to/model --no-quality

The same as `unclip bench …` (same options).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads


def main() -> None:
    from unclip.cli import app

    app(["bench", *sys.argv[1:]], prog_name="engine_bench.py")


if __name__ == "__main__":
    main()
