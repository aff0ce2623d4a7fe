"""The training core shared by every stage: accelerate, AdamW with warm-up and cosine decay, EMA weights,
periodic checkpoints with exact resume, a progress bar and a CSV metrics log.

A stage draws each batch from a generator seeded by (seed, step, process), so a resumed run sees exactly the
batches the interrupted run would have seen. The same code runs on CPU, one GPU, or under `accelerate launch`.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch


@dataclass
class TrainSpec:
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup: int = 100
    max_steps: int = 1000
    max_minutes: float = 60.0
    # "steps": the cosine spans max_steps. "time": it spans the training time the run can have (max_minutes,
    # or less when UNCLIP_DEADLINE comes first), so a time-boxed run still ends annealed.
    schedule: str = "steps"

    def __post_init__(self) -> None:
        if self.schedule not in ("steps", "time"):
            raise ValueError(f"unknown schedule {self.schedule!r}: use 'steps' or 'time'")

    @classmethod
    def from_config(cls, section: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainSpec:
        values = {**section, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


class Stage(Protocol):
    name: str

    def model(self) -> torch.nn.Module: ...

    def loss(
        self, model: torch.nn.Module, step: int, gen: torch.Generator, batch_size: int
    ) -> tuple[torch.Tensor, dict]: ...

    def export(self, model: torch.nn.Module) -> None: ...


class _StageLoss(torch.nn.Module):
    """The stage's loss as a module's forward. Under DistributedDataParallel (several processes) gradients are
    averaged only for what runs inside the wrapped module's forward, and stages call their model's other
    methods (encode, decode, the text and vision towers): wrapping the whole loss keeps every one of them in
    sync. State dicts are the model's own, keys unchanged, so checkpoints and exports are as before."""

    def __init__(self, stage: Stage, model: torch.nn.Module) -> None:
        super().__init__()
        self.stage = stage
        self.inner = model
        self._register_load_state_dict_pre_hook(self._into_inner)

    def forward(self, step: int, gen: torch.Generator, batch_size: int) -> tuple[torch.Tensor, dict]:
        return self.stage.loss(self.inner, step, gen, batch_size)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        return self.inner.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)

    @staticmethod
    def _into_inner(state_dict: dict, prefix: str, *_: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "inner.")]:
            state_dict[prefix + "inner." + key[len(prefix) :]] = state_dict.pop(key)


class _Progress:
    """Counters that travel inside the checkpoint."""

    def __init__(self) -> None:
        self.step = 0
        self.seconds = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.seconds = int(state["step"]), float(state["seconds"])


STALL_FACTOR = 4.0  # a step this many times slower than usual was paused, not working


def _lr_lambda(spec: TrainSpec, progress: _Progress, horizon: dict[str, float]):
    def f(step: int) -> float:
        if step < spec.warmup:
            return (step + 1) / max(1, spec.warmup)
        if spec.schedule == "time":
            frac = progress.seconds / max(horizon["seconds"], 1e-9)
        else:
            frac = (step - spec.warmup) / max(1, spec.max_steps - spec.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    return f


NORM_BATCHES = 25  # batches that re-estimate batch norms' statistics for the averaged weights


@torch.no_grad()
def _refresh_norms(stage: Any, model: torch.nn.Module, batch_size: int, device: torch.device, seed: int) -> None:
    """Batch norms' running statistics for the weights exported. The EMA averages parameters only: its weights
    went out with the statistics the raw weights' activations had (the judge's ResNet). They are measured
    again as SWA does, by the stage's own training batches through the averaged weights, in training mode."""
    norms = [
        m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches
    model.train()
    gen = torch.Generator(device=device)
    for i in range(NORM_BATCHES):
        gen.manual_seed(seed * 1_000_003 + 7_777_777 + i)
        stage.loss(model, i, gen, batch_size)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (Intel Xeon since Sapphire Rapids)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def _agree_max(acc, *values: float) -> list[float]:
    """The largest of each value over all processes. Every process must stop at the same step (or the next
    collective hangs) and follow the same learning-rate schedule, so what they decide by the clock is agreed."""
    if acc.num_processes == 1:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=acc.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _recover_checkpoint(run_dir: Path) -> None:
    """After a kill during a save, put the newest complete checkpoint back in place: a finished
    `checkpoint.tmp` (killed before its rename), else the `checkpoint.old` it replaces."""
    ckpt = run_dir / "checkpoint"
    if (ckpt / "done").exists():
        return
    for spare in (run_dir / "checkpoint.tmp", run_dir / "checkpoint.old"):
        if (spare / "done").exists():
            shutil.rmtree(ckpt, ignore_errors=True)
            spare.rename(ckpt)
            return


def train(
    stage: Stage,
    spec: TrainSpec,
    run_dir: Path,
    *,
    seed: int = 0,
    ema_decay: float = 0.999,
    mixed_precision: str = "no",
    save_every_minutes: float = 5.0,
    log_every: int = 25,
    show_progress: bool = True,
    resume: bool = True,
    stop_at_step: int | None = None,
) -> dict[str, float]:
    """Train `stage` until spec.max_steps or spec.max_minutes (training time, summed over resumes), then
    export the EMA weights. Returns the last logged metrics. `stop_at_step` checkpoints and returns early
    without exporting, as an interrupted run would have left things."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from diffusers.training_utils import EMAModel

    if (
        mixed_precision != "no"
        and not torch.cuda.is_available()
        and not (mixed_precision == "bf16" and cpu_has_amx())
    ):
        mixed_precision = "no"  # bf16 is ~200x slower than fp32 on CPUs without AMX, 1.4-3x faster with it
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # several processes (accelerate launch --multi_gpu, torchrun) on a machine without GPUs: gloo on CPUs
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    # some stages leave parameters out of a step's graph (the prior's unused embeddings, a frozen half)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # the schedule counts optimizer steps: accelerate would otherwise step it once per process each step
    acc = Accelerator(
        mixed_precision=mixed_precision,
        project_dir=str(run_dir),
        kwargs_handlers=[ddp],
        step_scheduler_with_optimizer=False,
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)  # the same initial weights in every run and every process
    model = stage.model()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name or "embedding" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.99),
    )
    progress = _Progress()
    horizon = {"seconds": spec.max_minutes * 60}  # the time schedule's span, fixed once resumed
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(spec, progress, horizon))
    model, opt, sched = acc.prepare(_StageLoss(stage, model), opt, sched)
    ema = EMAModel(
        [p for p in acc.unwrap_model(model).parameters() if p.requires_grad],
        decay=ema_decay,
        use_ema_warmup=True,
        power=0.75,
        foreach=True,  # one fused update for all tensors, not three small kernels per tensor (GPU launch-bound)
    )
    ema.to(acc.device)
    acc.register_for_checkpointing(ema, progress)

    ckpt = run_dir / "checkpoint"
    if resume and acc.is_main_process:
        _recover_checkpoint(run_dir)
    acc.wait_for_everyone()
    if resume and (ckpt / "done").exists():
        acc.load_state(str(ckpt))
        ema.to(acc.device)  # the EMA shadow weights load on the CPU
        acc.print(f"[{stage.name}] resumed at step {progress.step} ({progress.seconds / 60:.1f} min trained)")

    def save() -> None:
        # every process writes its own random states into the folder, so it must exist before any writes
        # and may only be renamed once all have written
        tmp = run_dir / "checkpoint.tmp"
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "done").write_text(str(progress.step))
            # never a moment without a complete checkpoint on disk: the old one is set aside, not deleted first
            old = run_dir / "checkpoint.old"
            shutil.rmtree(old, ignore_errors=True)
            if ckpt.exists():
                ckpt.rename(old)
            tmp.rename(ckpt)
            shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    metrics_path = run_dir / "metrics.csv"
    log_file = metrics_path.open("a", newline="") if acc.is_main_process else None
    writer: csv.DictWriter | None = None
    last: dict[str, float] = {}
    bar = None
    if show_progress and acc.is_main_process:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn(f"[bold]{stage.name}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        task = bar.add_task(stage.name, total=spec.max_steps, completed=progress.step, info="")
        bar.start()

    model.train()
    budget = spec.max_minutes * 60
    # UNCLIP_DEADLINE (unix time) stops every stage of a time-boxed run, such as scripts/train_gpu.sh
    deadline = float(os.environ.get("UNCLIP_DEADLINE", "inf"))
    (horizon["seconds"],) = _agree_max(acc, min(budget, progress.seconds + max(0.0, deadline - time.time())))
    last_save = time.time()
    window_start, window_items = time.time(), 0
    typical: float | None = None  # a step's usual wall time, to tell a pause (SIGSTOP, a starved CPU) from work
    try:
        while True:
            stop = progress.step >= spec.max_steps or progress.seconds >= budget or time.time() >= deadline
            due = time.time() - last_save > save_every_minutes * 60
            progress.seconds, stop, due = _agree_max(acc, progress.seconds, stop, due)
            if stop:
                break  # the final checkpoint is saved below
            if due:
                save()
                last_save = time.time()
            t0 = time.time()
            gen = torch.Generator(device=acc.device)
            gen.manual_seed(seed * 1_000_003 + progress.step * 7919 + acc.process_index)
            with acc.autocast():
                loss, info = model(progress.step, gen, spec.batch_size)
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            ema.step([p for p in acc.unwrap_model(model).parameters() if p.requires_grad])
            progress.step += 1
            took = time.time() - t0
            if typical is not None and took > STALL_FACTOR * typical:
                took = typical  # paused or starved: count what the step costs, so the schedule keeps its span
            typical = took if typical is None else 0.9 * typical + 0.1 * took
            progress.seconds += took
            window_items += spec.batch_size * acc.num_processes
            if progress.step % log_every == 0 or progress.step == spec.max_steps:
                rate = window_items / max(time.time() - window_start, 1e-6)
                mean_loss = loss.detach().float()
                if acc.num_processes > 1:  # the global batch's loss (every process is at this step)
                    mean_loss = acc.reduce(mean_loss, "mean")
                window_start, window_items = time.time(), 0
                last = {
                    "step": progress.step,
                    "loss": float(mean_loss),
                    "lr": sched.get_last_lr()[0],
                    "items_per_s": rate,
                    "minutes": progress.seconds / 60,
                    **{k: float(v.detach() if torch.is_tensor(v) else v) for k, v in info.items()},
                }
                if log_file is not None:
                    if writer is None:
                        writer = csv.DictWriter(log_file, fieldnames=list(last), extrasaction="ignore")
                        if metrics_path.stat().st_size == 0:
                            writer.writeheader()
                    writer.writerow(last)
                    log_file.flush()
                if bar is not None:
                    bar.update(task, completed=progress.step, info=f"loss {last['loss']:.4f}  {rate:.0f}/s")
                elif acc.is_main_process and not show_progress:
                    acc.print(f"[{stage.name}] step {progress.step} loss {last['loss']:.4f} {rate:.0f}/s")
            if stop_at_step is not None and progress.step >= stop_at_step:
                save()
                return {"step": progress.step, "interrupted": 1.0}
    finally:
        if bar is not None:
            bar.stop()
        if log_file is not None:
            log_file.close()
    save()
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(model).inner
        ema.copy_to([p for p in unwrapped.parameters() if p.requires_grad])
        _refresh_norms(stage, unwrapped, spec.batch_size, acc.device, seed)
        unwrapped.eval()
        stage.export(unwrapped)
    acc.wait_for_everyone()
    last.setdefault("step", progress.step)
    last["minutes"] = progress.seconds / 60
    return last
