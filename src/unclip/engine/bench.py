"""Benchmark: the engine against the stock diffusers Kandinsky 2.2 pipelines on the same weights.

Stock: `KandinskyV22PriorPipeline.from_pretrained(model/prior)` (its defaults: 25 steps, guidance 4) and
`KandinskyV22Pipeline.from_pretrained(model/decoder)` (its defaults: 100 DDPM steps, guidance 4) at the
decoder's native size (64 px for the bundled model). Stock diffusers has no learned upsampling stage, so
both sides then go through the same cascade, `unclip.engine.engine.upscale_cascade` over
`unclip.models.upsampling.upsample`, with the model's `upsampler-256`/`upsampler-1024` weights (the stock
side loads its own copies with `UNet2DModel.from_pretrained` and prepares them as the engine does, so this
stage is the same code on the same weights on both sides and the speed ratio measures the prior and the
decoder). Engine: `Engine.generate` with its defaults.

Runs are interleaved (stock and engine alternate, in alternating order per repeat) so both see the same
machine load. Per run: wall time, process CPU time and the peak resident memory during the run (sampled).
Quality: CLIP retrieval with the model's own CLIP (prior/text_encoder, prior/image_encoder): each generated
image is matched against all benchmark prompts; top-1 accuracy and the mean cosine to its own prompt.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from unclip.engine.engine import prepare_upsamplers, upscale_cascade

#: Real emoji labels (emojibase) with the caption style phrases used in training; visually distinct.
PROMPTS = (
    "grinning face, twemoji style",
    "red apple, noto style",
    "rocket, flat Fluent icon",
    "red heart, openmoji style",
    "pizza, twemoji style",
    "sun, noto style",
    "dog face, twemoji style",
    "christmas tree, flat Fluent icon",
)
TIMING_PROMPT = "grinning face, noto style"


# ----------------------------------------------------------------------------------------- the two sides
class Stock:
    """The stock diffusers pipelines with their default settings, plus the shared upsampling cascade."""

    def __init__(self, model_dir: Path) -> None:
        from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline, UNet2DModel

        from unclip.engine.components import find_parts

        parts = find_parts(model_dir)
        self.prior = KandinskyV22PriorPipeline.from_pretrained(parts["prior"])
        self.decoder = KandinskyV22Pipeline.from_pretrained(parts["decoder"])
        for pipe in (self.prior, self.decoder):
            pipe.set_progress_bar_config(disable=True)
        self.native = int(self.decoder.unet.config.sample_size) * self.decoder.movq_scale_factor
        self.upsamplers = prepare_upsamplers(
            {
                s: UNet2DModel.from_pretrained(parts[f"upsampler-{s}"]).eval()
                for s in (256, 1024)
                if f"upsampler-{s}" in parts
            }
        )

    @torch.inference_mode()
    def generate(self, prompt: str, n: int, size: int, seed: int) -> list[Image.Image]:
        from unclip.engine.images import to_pil

        g = torch.Generator("cpu").manual_seed(seed)
        out = self.prior(prompt, num_images_per_prompt=n, generator=g)
        work = self.native if self.upsamplers else size
        x = self.decoder(
            image_embeds=out.image_embeds,
            negative_image_embeds=out.negative_image_embeds,
            height=work,
            width=work,
            generator=g,
            output_type="pt",
        ).images
        x = x.to(torch.float32) * 2 - 1  # [0, 1] → [-1, 1]
        return to_pil(self.upscale(x, size))

    def upscale(self, x: torch.Tensor, size: int) -> torch.Tensor:
        return upscale_cascade(self.upsamplers, x, size)


def _engine_generate(engine) -> Callable[[str, int, int, int], list[Image.Image]]:
    return lambda prompt, n, size, seed: engine.generate(prompt, n=n, size=size, seed=seed)


# ----------------------------------------------------------------------------------------- stage timer
STAGES = ("prior", "decoder", "movq", "upsampling")


@contextmanager
def stage_times(stock: Stock, engine, out: dict[str, float]):
    """Add the CPU seconds spent in each stage (prior, decoder, MoVQ decoding, upsampling) to `out`, on both
    sides: the engine's sampling loops and the stock pipelines' denoising models are wrapped meanwhile (the
    stock prior and decoder figures are their models' calls, without the schedulers' own small cost)."""
    import unclip.engine.engine as engine_mod
    from unclip.engine import diffusion

    def timed(stage_name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            c = _cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                out[stage_name] = out.get(stage_name, 0.0) + _cpu() - c

        return wrapper

    patches = [
        (diffusion, "sample_prior", "prior"),
        (diffusion, "sample_decoder", "decoder"),
        (engine_mod, "upscale_cascade", "upsampling"),
        (stock, "upscale", "upsampling"),
        (stock.prior.prior, "forward", "prior"),
        (stock.decoder.unet, "forward", "decoder"),
        (stock.decoder.movq, "decode", "movq"),
        (engine.c.movq, "decode", "movq"),
    ]
    saved = [(obj, name, obj.__dict__.get(name)) for obj, name, _ in patches]
    try:
        for obj, name, stage_name in patches:
            setattr(obj, name, timed(stage_name, getattr(obj, name)))
        yield out
    finally:
        for obj, name, fn in saved:
            if fn is None:
                delattr(obj, name)  # back to the class attribute
            else:
                setattr(obj, name, fn)


# ----------------------------------------------------------------------------------------- measuring
def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is optional
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measure:
    wall: float
    cpu: float
    peak_rss: int


def measure(fn: Callable[[], Any]) -> tuple[Any, Measure]:
    """Run fn; wall time, process CPU time and the peak RSS seen while it ran (sampled every 5 ms)."""
    peak = [_rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _rss())

    t = threading.Thread(target=sample, daemon=True)
    c0 = _cpu()
    t0 = time.perf_counter()
    t.start()
    try:
        result = fn()
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        t.join()
    return result, Measure(wall, _cpu() - c0, max(peak[0], _rss()))


@torch.inference_mode()
def clip_retrieval(
    engine, prompts: Sequence[str], images: Sequence[Image.Image], owners: Sequence[int]
) -> dict:
    """Top-1 accuracy of matching each image to its own prompt among `prompts`, and the mean cosine to it,
    with the model's own CLIP (prior/text_encoder, prior/image_encoder)."""
    from unclip.engine.images import to_tensor

    text = F.normalize(engine._text(list(prompts)).embeds.float(), dim=-1)
    pix = to_tensor(list(images), engine.c.image_size).to(engine.device)
    img = F.normalize(engine.c.image_encoder(pixel_values=engine.c.clip_pixels(pix)).image_embeds.float(), dim=-1)
    sim = img @ text.T
    own = torch.tensor(list(owners))
    top1 = (sim.argmax(1) == own).float().mean().item()
    cos = sim[torch.arange(len(own)), own].mean().item()
    return {"top1": top1, "cosine": cos, "images": len(own), "prompts": len(prompts)}


# ----------------------------------------------------------------------------------------- the run
@dataclass
class BenchConfig:
    model: Path | None = None
    sizes: tuple[int, ...] = (256,)
    ns: tuple[int, ...] = (1, 4)
    repeats: int = 2
    threads: int | None = None
    quality_prompts: tuple[str, ...] = PROMPTS
    quality_per_prompt: int = 2
    quality: bool = True
    upsampling: bool = True
    seed: int = 1234


@dataclass
class Row:
    size: int
    n: int
    stock: list[Measure] = field(default_factory=list)
    engine: list[Measure] = field(default_factory=list)
    #: CPU seconds per stage, summed over the repeats (divide by `repeats`)
    stages: dict[str, dict[str, float]] = field(default_factory=lambda: {"stock": {}, "engine": {}})

    @staticmethod
    def _med(ms: list[Measure], attr: str) -> float:
        return statistics.median(getattr(m, attr) for m in ms)

    def summary(self) -> dict[str, float]:
        sw, ew = self._med(self.stock, "wall"), self._med(self.engine, "wall")
        return {
            "stock_s": sw,
            "engine_s": ew,
            "stock_cpu_s": self._med(self.stock, "cpu"),
            "engine_cpu_s": self._med(self.engine, "cpu"),
            "stock_img_s": self.n / sw,
            "engine_img_s": self.n / ew,
            "stock_rss_mb": max(m.peak_rss for m in self.stock) / 2**20,
            "engine_rss_mb": max(m.peak_rss for m in self.engine) / 2**20,
            "speedup": sw / ew,
            "speedup_cpu": self._med(self.stock, "cpu") / self._med(self.engine, "cpu"),
        }


@dataclass
class BenchResult:
    config: BenchConfig
    rows: list[Row]
    quality: dict[str, dict] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Measure] = field(default_factory=dict)
    #: size → (plain batched upsample, the engine's cascade), for n = max(ns)
    upsampling: dict[int, tuple[Measure, Measure]] = field(default_factory=dict)


def environment(threads: int) -> dict[str, Any]:
    import diffusers

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (float("nan"),) * 3
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "load_before": round(load[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    from unclip import BUNDLED_MODEL_DIR
    from unclip.engine import Engine

    model_dir = Path(cfg.model) if cfg.model is not None else BUNDLED_MODEL_DIR
    engine, m_engine = measure(lambda: Engine.load(model_dir, threads=cfg.threads))
    stock, m_stock = measure(lambda: Stock(model_dir))
    result = BenchResult(
        cfg, [], env=environment(torch.get_num_threads()), load={"stock": m_stock, "engine": m_engine}
    )
    sides: dict[str, Callable[[str, int, int, int], list[Image.Image]]] = {
        "stock": stock.generate,
        "engine": _engine_generate(engine),
    }
    log(
        f"loaded {model_dir.name}: engine {m_engine.wall:.1f} s, stock {m_stock.wall:.1f} s; "
        f"{result.env['torch_threads']} torch threads, load average {result.env['load_before']}"
    )
    for name, fn in sides.items():  # warm-up (allocator, oneDNN primitives), untimed
        fn(TIMING_PROMPT, 1, min(cfg.sizes), cfg.seed)
        log(f"warmed up {name}")
    for size in cfg.sizes:
        for n in cfg.ns:
            row = Row(size, n)
            for r in range(cfg.repeats):
                order = ("stock", "engine") if r % 2 == 0 else ("engine", "stock")
                for name in order:
                    with stage_times(stock, engine, row.stages[name]):
                        images, m = measure(
                            lambda f=sides[name], n=n, size=size, s=cfg.seed + r: f(TIMING_PROMPT, n, size, s)
                        )
                    if len(images) != n or images[0].size != (size, size):
                        raise RuntimeError(f"{name} returned {len(images)} images of {images[0].size}")
                    getattr(row, name).append(m)
                    log(
                        f"{size:>5} px  n={n}  {name:<6} {m.wall:7.2f} s wall  {m.cpu:7.2f} s cpu  "
                        f"{m.peak_rss / 2**20:6.0f} MB"
                    )
            result.rows.append(row)
    if cfg.upsampling:
        from diffusers import UNet2DModel

        from unclip.engine.components import find_parts

        parts = find_parts(model_dir)
        plain = {s: UNet2DModel.from_pretrained(parts[f"upsampler-{s}"]).eval() for s in stock.upsamplers}
        n = max(cfg.ns)
        x = torch.rand(n, 3, stock.native, stock.native, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.inference_mode():
            for size in cfg.sizes:
                if not plain or size <= stock.native:
                    continue
                _, a = measure(lambda size=size: upscale_cascade(plain, x, size, chunk=n))
                _, b = measure(lambda size=size: upscale_cascade(engine.c.upsamplers, x, size))
                result.upsampling[size] = (a, b)
                log(f"upsampling {size:>5} px  n={n}  plain batched {a.wall:6.2f} s  engine {b.wall:6.2f} s")
    if cfg.quality:
        prompts = list(cfg.quality_prompts)
        k = cfg.quality_per_prompt
        for name in ("stock", "engine"):
            images, owners = [], []
            for i, p in enumerate(prompts):
                images += sides[name](p, k, 256, cfg.seed + 100 * i)
                owners += [i] * k
            result.quality[name] = clip_retrieval(engine, prompts, images, owners)
            q = result.quality[name]
            log(f"quality {name:<6} top-1 {q['top1']:.3f}  cosine {q['cosine']:.4f}  ({q['images']} images)")
    result.env["load_after"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------------- report
def targets(result: BenchResult) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for the issue's targets: ≥ 3× the stock speed (checked per size: at 512 and
    1024 px the upsampling stage, the same on both sides, dominates), n=4 at 256 px within 5 s, and no loss
    of quality (CLIP top-1 not below stock's by more than one image)."""
    out = []
    for size in dict.fromkeys(r.size for r in result.rows):
        speedups = [r.summary()["speedup"] for r in result.rows if r.size == size]
        worst = min(speedups)
        out.append(
            (f"engine ≥ 3× faster than stock at {size} px (wall, every n)", worst >= 3, f"{worst:.2f}×")
        )
    for r in result.rows:
        if r.size == 256 and r.n == 4:
            s = r.summary()
            out.append(
                (
                    "n=4 at 256×256 within 5 s wall",
                    s["engine_s"] <= 5.0,
                    f"{s['engine_s']:.2f} s wall, {s['engine_cpu_s']:.2f} s CPU",
                )
            )
    if "stock" in result.quality and "engine" in result.quality:
        qs, qe = result.quality["stock"], result.quality["engine"]
        ok = qe["top1"] >= qs["top1"] - 1 / qs["images"] - 1e-9
        out.append(
            (
                "no loss of quality (CLIP top-1 within one image of stock)",
                ok,
                f"engine {qe['top1']:.3f} vs stock {qs['top1']:.3f}",
            )
        )
    return out


def to_markdown(result: BenchResult, command: str) -> str:
    env = result.env
    lines = [
        f"## Engine vs stock diffusers: {', '.join(map(str, result.config.sizes))} px, "
        f"n = {', '.join(map(str, result.config.ns))}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['torch_threads']} torch threads, "
        f"OMP_WAIT_POLICY={env['omp_wait_policy']}; torch {env['torch']}, diffusers {env['diffusers']}, "
        f"Python {env['python']}; {env['date']}. Load average {env['load_before']} before, "
        f"{env.get('load_after', '?')} after (the machine is shared: wall times include waiting for the CPU, "
        "CPU times do not).",
        "",
        f"Model loading: engine {result.load['engine'].wall:.1f} s, stock {result.load['stock'].wall:.1f} s.",
        "",
        "| size | n | stock s | engine s | speed-up | stock CPU s | engine CPU s | CPU speed-up "
        "| stock img/s | engine img/s | stock peak RSS MB | engine peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        s = r.summary()
        lines.append(
            f"| {r.size} | {r.n} | {s['stock_s']:.2f} | {s['engine_s']:.2f} | **{s['speedup']:.2f}×** | "
            f"{s['stock_cpu_s']:.2f} | {s['engine_cpu_s']:.2f} | {s['speedup_cpu']:.2f}× | "
            f"{s['stock_img_s']:.3f} | {s['engine_img_s']:.3f} | {s['stock_rss_mb']:.0f} | "
            f"{s['engine_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"Medians of {result.config.repeats} interleaved runs; peak RSS is the whole process (both "
        "pipelines stay loaded), the highest seen during that side's runs.",
        "",
    ]
    if result.quality:
        lines += [
            "| quality (CLIP retrieval, the model's own CLIP) | top-1 | mean cosine to own prompt | images |",
            "|---|---:|---:|---:|",
        ]
        for name in ("stock", "engine"):
            q = result.quality.get(name)
            if q:
                lines.append(f"| {name} | {q['top1']:.3f} | {q['cosine']:.4f} | {q['images']} |")
        prompts = "; ".join(result.config.quality_prompts)
        lines += [
            "",
            f"{len(result.config.quality_prompts)} prompts × {result.config.quality_per_prompt} "
            f"seeds at 256 px; each image is matched against all prompts: {prompts}.",
            "",
        ]
    lines += [
        "### Where the time goes",
        "",
        "CPU seconds per run, by stage (mean over the repeats; stock prior and "
        "decoder are their models' calls).",
        "",
        "| size | n | side | prior | decoder | MoVQ decode | upsampling | rest | total CPU |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        for side in ("stock", "engine"):
            reps = max(1, len(getattr(r, side)))
            st = {k: v / reps for k, v in r.stages[side].items()}
            total = statistics.fmean(m.cpu for m in getattr(r, side))
            rest = total - sum(st.get(k, 0.0) for k in STAGES)
            cells = " | ".join(f"{st.get(k, 0.0):.2f}" for k in STAGES)
            lines.append(f"| {r.size} | {r.n} | {side} | {cells} | {rest:.2f} | {total:.2f} |")
    lines.append("")
    if result.upsampling:
        n = max(result.config.ns)
        lines += [
            "### The upsampling stage alone",
            "",
            f"The same cascade on both sides above. For reference, n={n} decoder outputs taken up with plain "
            "batched `upsample` calls (contiguous weights, whole batch) against the engine's way (channels-last "
            "weights, one image at a time):",
            "",
            "| size | plain batched s | engine s | speed-up |",
            "|---:|---:|---:|---:|",
        ]
        for size, (a, b) in result.upsampling.items():
            lines.append(f"| {size} | {a.wall:.2f} | {b.wall:.2f} | {a.wall / b.wall:.2f}× |")
        lines.append("")
    t = targets(result)
    if t:
        lines += ["| target | met | measured |", "|---|:---:|---|"]
        lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in t]
        lines.append("")
    return "\n".join(lines)
