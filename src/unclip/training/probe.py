"""`--batch-size auto`: on a GPU, time a few training steps at growing batch sizes and train at the smallest
one that comes within a tolerance of the best samples per second.

A small UNet at the config's batch leaves a large GPU waiting on kernel launches: each step costs about the
same time whatever the batch until the arithmetic fills the card. Larger batches then buy samples for free,
and the smallest batch near the best rate keeps as many optimizer steps as that allows. The learning rate
follows the batch by the square root of their ratio. On a CPU the config's batch is kept (a bigger batch
buys nothing there, and timing one costs minutes).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from unclip.training.core import Stage

CHOICE_FILE = "batch.json"  # in the stage's run folder: a resumed run keeps the batch it chose


@dataclass
class Probe:
    batch_size: int
    samples_per_s: float
    step_ms: float
    peak_memory_gb: float | None = None
    out_of_memory: bool = False


def choose(probes: list[Probe], tolerance: float = 0.1) -> int:
    """The smallest batch whose rate is within `tolerance` of the best rate measured."""
    ok = [p for p in probes if not p.out_of_memory]
    if not ok:
        raise RuntimeError("no batch size fitted in memory")
    best = max(p.samples_per_s for p in ok)
    return min(p.batch_size for p in ok if p.samples_per_s >= (1 - tolerance) * best)


def scaled_lr(lr: float, base_batch: int, batch: int) -> float:
    return lr * math.sqrt(batch / base_batch)


def time_steps(
    stage: Stage,
    device: torch.device,
    batch_size: int,
    mixed_precision: str = "no",
    steps: int = 5,
    warmup: int = 2,
) -> Probe:
    """Samples per second of `steps` full training steps (loss, backward, AdamW) after `warmup` untimed ones."""
    model = stage.model().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for i in range(warmup + steps):
            if i == warmup:
                sync()
                start = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=mixed_precision in ("bf16", "fp16")):
                loss, _ = stage.loss(model, i, gen, batch_size)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync()
        seconds = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        return Probe(batch_size, 0.0, 0.0, out_of_memory=True)  # (JSON has no infinity)
    finally:
        del model, opt, params
        if cuda:
            torch.cuda.empty_cache()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    return Probe(batch_size, steps * batch_size / seconds, 1000 * seconds / steps, peak)


def probe_batch_sizes(
    measure: Callable[[int], Probe], base: int, most: int = 16384, gain: float = 0.05
) -> list[Probe]:
    """Measure base, 2·base, 4·base, … until memory runs out, `most` is passed, or doubling the batch no
    longer raises the rate by `gain`."""
    probes: list[Probe] = []
    batch = base
    while batch <= most:
        p = measure(batch)
        probes.append(p)
        if p.out_of_memory:
            break
        ok = [q for q in probes[:-1] if not q.out_of_memory]
        if ok and p.samples_per_s < (1 + gain) * ok[-1].samples_per_s:
            break
        batch *= 2
    return probes


def auto_batch(
    stage: Stage,
    device: torch.device,
    base_batch: int,
    base_lr: float,
    stage_dir: Path,
    mixed_precision: str = "no",
    log: Callable[[str], None] = print,
) -> tuple[int, float]:
    """(batch size, learning rate) for `--batch-size auto`; written to stage_dir/batch.json with the timings,
    and read back from there when the stage resumes."""
    path = stage_dir / CHOICE_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        log(f"[{stage.name}] batch size {saved['batch_size']} (chosen when this run started)")
        return int(saved["batch_size"]), float(saved["lr"])
    if device.type != "cuda":
        log(f"[{stage.name}] batch size auto: not on a GPU, the config's {base_batch}")
        return base_batch, base_lr
    probes = probe_batch_sizes(
        lambda b: time_steps(stage, device, b, mixed_precision), base_batch
    )
    batch = choose(probes)
    lr = scaled_lr(base_lr, base_batch, batch)
    for p in probes:
        log(
            f"[{stage.name}] batch {p.batch_size}: "
            + ("out of memory" if p.out_of_memory else f"{p.samples_per_s:.0f} samples/s, {p.step_ms:.1f} ms/step")
            + (f", {p.peak_memory_gb:.1f} GiB" if p.peak_memory_gb else "")
        )
    log(f"[{stage.name}] training at batch {batch}, learning rate {lr:.3g}")
    stage_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")  # whole or not at all: a resume reads the choice back
    tmp.write_text(
        json.dumps(
            {"batch_size": batch, "lr": lr, "base_batch_size": base_batch, "base_lr": base_lr,
             "device": torch.cuda.get_device_name(device), "probes": [asdict(p) for p in probes]},
            indent=2,
        )
    )  # fmt: skip
    os.replace(tmp, path)
    return batch, lr
