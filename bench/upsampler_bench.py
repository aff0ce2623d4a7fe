"""The learned upsampling stages of two model folders side by side: seconds to carry n decoder outputs (64 px)
to each size with the engine's cascade, interleaved runs, medians and the ratio.

    .venv/bin/python bench/upsampler_bench.py OLD_MODEL NEW_MODEL --sizes 256,512,1024 --n 4 --repeats 3

Quality is a separate command: `unclip eval upsampler --model M --data D` (PSNR, SSIM, edge sharpness
against Lanczos on test-split renders).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads


def load(model: Path) -> dict:
    from diffusers import UNet2DModel

    from unclip.engine.engine import prepare_upsamplers

    return prepare_upsamplers(
        {s: UNet2DModel.from_pretrained(model / f"upsampler-{s}").eval() for s in (256, 1024)}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from unclip.engine.engine import upscale_cascade

    torch.set_num_threads(args.threads)
    models = {"a": load(args.a), "b": load(args.b)}
    params = {k: sum(p.numel() for m in v.values() for p in m.parameters()) / 1e6 for k, v in models.items()}
    x = torch.rand(args.n, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[tuple[int, str], list[float]] = {(s, k): [] for s in sizes for k in models}
    with torch.inference_mode():
        for k in models:  # warm-up
            upscale_cascade(models[k], x[:1], 256)
        for s in sizes:
            for r in range(args.repeats):
                for k in ("a", "b") if r % 2 == 0 else ("b", "a"):
                    t = time.perf_counter()
                    upscale_cascade(models[k], x, s)
                    times[s, k].append(time.perf_counter() - t)
    print(f"A = {args.a} ({params['a']:.2f} M parameters), B = {args.b} ({params['b']:.2f} M parameters)")
    print(f"{args.n} images from 64 px, {args.threads} threads, medians of {args.repeats} interleaved runs, "
          f"load average {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| size | A s | B s | B faster by |\n|---:|---:|---:|---:|")
    for s in sizes:
        a, b = statistics.median(times[s, "a"]), statistics.median(times[s, "b"])
        print(f"| {s} | {a:.2f} | {b:.2f} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
