"""`unclip data build emoji`: fetch, join, caption, split, rasterise and shard the emoji dataset."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from unclip.data.captions import captions_for
from unclip.data.emoji import LOCALES, Icon, base_hexcode, join_icons, load_emojibase, load_holdout
from unclip.data.render import cached_render
from unclip.data.shards import ShardWriter
from unclip.data.sources import EMOJIBASE, STYLE_SOURCES, fetch_all
from unclip.data.staging import staged

SPLITS = ("train", "val", "test", "holdout")
DEFAULT_SIZES = (64, 128, 256, 1024)
LARGE = 1024  # sizes at or above this are rendered for a capped subset only (see `large_limit`)


@dataclass
class BuildConfig:
    out: Path
    cache: Path
    holdout: Path
    sizes: tuple[int, ...] = DEFAULT_SIZES
    locales: tuple[str, ...] = LOCALES
    large_limit: int = 1500  # per split; rendering 1024 px fluent-emoji costs ~1 s each on one core
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 0
    test_percent: int = 8
    val_percent: int = 4


def split_of(base: str, cfg: BuildConfig) -> str:
    bucket = int(hashlib.md5(base.encode()).hexdigest(), 16) % 100
    if bucket < cfg.test_percent:
        return "test"
    return "val" if bucket < cfg.test_percent + cfg.val_percent else "train"


def assign_splits(
    icons: list[Icon], holdout: set[tuple[str, str]], cfg: BuildConfig
) -> dict[str, list[Icon]]:
    held_bases = {h for h, _ in holdout}
    held_drawings = {(i.style, i.svg) for i in icons if (i.entry.base, i.style) in holdout}
    out: dict[str, list[Icon]] = {s: [] for s in SPLITS}
    for icon in icons:
        base = icon.entry.base
        if (base, icon.style) in holdout:
            out["holdout"].append(icon)
        elif (icon.style, icon.svg) in held_drawings:
            continue  # a set that draws two emoji alike (openmoji's firefighter and man firefighter): the copy
            # of a held-out drawing would teach it under another name, so neither part gets it
        elif base in held_bases:
            out["train"].append(icon)  # the emoji is seen in its other styles; only the pair is held out
        else:
            out[split_of(base, cfg)].append(icon)
    check_holdout(out, holdout)
    return out


class HoldoutLeak(AssertionError):
    pass


def check_holdout(splits: dict[str, list[Icon]], holdout: set[tuple[str, str]]) -> int:
    """Raise HoldoutLeak when an image of a held-out (emoji, style) pair, skin tones included, or a drawing
    identical to one, is in train, val or test (the shipped configs train on all three). Recomputes each image's
    base emoji from its hexcode, independently of how the splits were assigned. Returns the number of images
    checked."""
    held_drawings = {(i.style, i.svg) for i in splits.get("holdout", [])}
    trained = [i for s in ("train", "val", "test") for i in splits.get(s, [])]
    leaked = [(i.entry.hexcode, i.style) for i in trained if (base_hexcode(i.entry.hexcode), i.style) in holdout]
    copies = [(i.entry.hexcode, i.style) for i in trained if (i.style, i.svg) in held_drawings]
    if leaked:
        raise HoldoutLeak(f"{len(leaked)} images of holdout pairs in train/val/test, e.g. {leaked[:5]}")
    if copies:
        raise HoldoutLeak(f"{len(copies)} images drawn exactly as a holdout image in train/val/test, e.g. {copies[:5]}")
    return len(trained)


def sample_key(icon: Icon) -> str:
    return f"{icon.style}_{icon.entry.hexcode}"


def _render_job(args: tuple[str, str, tuple[int, ...], str]) -> dict[int, tuple[bytes, bytes]]:
    key, svg, sizes, cache = args
    try:
        return {size: cached_render(svg, size, Path(cache)) for size in sizes}
    except Exception as exc:  # the pool would otherwise report it without saying which drawing
        raise ValueError(f"cannot render {key}: {exc}") from None


def build(cfg: BuildConfig, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Build the dataset into cfg.out and return the manifest (also written to manifest.json)."""
    started = time.time()
    style_dirs, emojibase_dir = fetch_all(cfg.cache / "npm")
    entries = load_emojibase(emojibase_dir, cfg.locales)
    icons, join_stats = join_icons(style_dirs, entries)
    holdout = load_holdout(cfg.holdout)
    splits = assign_splits(icons, holdout, cfg)
    checked = check_holdout(splits, holdout)  # asserted again here, whatever assign_splits did

    rng = random.Random(cfg.seed)
    large = {
        sample_key(i)
        for s, items in splits.items()
        for i in sorted(items, key=lambda i: hashlib.md5(sample_key(i).encode()).hexdigest())[
            : cfg.large_limit
        ]
    }
    jobs = [
        (
            sample_key(icon),
            icon.svg,
            tuple(sz for sz in cfg.sizes if sz < LARGE or sample_key(icon) in large),
            str(cfg.cache / "render"),
        )
        for s in SPLITS
        for icon in splits[s]
    ]
    order = [(s, icon) for s in SPLITS for icon in splits[s]]
    with staged(cfg.out) as stage:  # a failed or interrupted build leaves the dataset in place as it was
        writers = {
            (s, size): ShardWriter(stage / "shards" / str(size), s, max_count=2000 if size < LARGE else 200)
            for s in SPLITS
            for size in cfg.sizes
        }
        render_started = time.time()
        n_images = 0
        (stage / "svg").mkdir(parents=True, exist_ok=True)
        svg_files = {  # mtime=0: the same inputs give byte-identical files
            s: io.TextIOWrapper(gzip.GzipFile(stage / "svg" / f"{s}.jsonl.gz", "wb", mtime=0), encoding="utf-8")
            for s in SPLITS
        }
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for done, ((split, icon), rendered) in enumerate(
                zip(order, pool.map(_render_job, jobs, chunksize=16), strict=True)
            ):
                meta = {
                    "key": sample_key(icon),
                    "hexcode": icon.entry.hexcode,
                    "emoji": icon.entry.emoji,
                    "label": icon.entry.labels.get("en", ""),
                    "group": icon.entry.group,
                    "subgroup": icon.entry.subgroup,
                    "style": icon.style,
                    "skin_tone": list(icon.entry.tone),
                    "base_hexcode": icon.entry.base,
                    "split": split,
                    "captions": captions_for(icon.entry, icon.style, rng),
                }
                for size, (rgb, alpha) in rendered.items():
                    writers[(split, size)].write(
                        meta["key"],
                        {"png": rgb, "alpha.png": alpha, "txt": meta["captions"]["en"][-1], "json": meta},
                    )
                    n_images += 1
                svg_files[split].write(json.dumps({"key": meta["key"], "svg": icon.svg}) + "\n")
                if progress:
                    progress("render", done + 1, len(order))
        for w in writers.values():
            w.close()
        for f in svg_files.values():
            f.close()
        render_seconds = time.time() - render_started

        found = {(i.entry.base, i.style) for i in splits["holdout"]}
        manifest = {
            "name": "unclip-emoji",
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sizes": list(cfg.sizes),
            "large_limit_per_split": cfg.large_limit,
            "locales": sorted({"en", *cfg.locales}),
            "sources": {
                **{
                    s: {
                        "package": v.package,
                        "version": v.version,
                        "license": v.license,
                        "attribution": v.attribution,
                    }
                    for s, v in STYLE_SOURCES.items()
                },
                "captions": {
                    "package": EMOJIBASE.package,
                    "version": EMOJIBASE.version,
                    "license": EMOJIBASE.license,
                    "attribution": EMOJIBASE.attribution,
                },
            },
            "join": join_stats,
            "counts": {
                s: dict(Counter(i.style for i in items)) | {"total": len(items)} for s, items in splits.items()
            },
            "emoji_per_split": {s: len({i.entry.base for i in items}) for s, items in splits.items()},
            "shards": {
                f"{size}/{s}": [str(p.relative_to(stage)) for p in writers[(s, size)].paths]
                for s in SPLITS
                for size in cfg.sizes
            },
            "images_per_size": {
                str(size): sum(w.total for (s, sz), w in writers.items() if sz == size) for size in cfg.sizes
            },
            "holdout": {
                "file": str(cfg.holdout.resolve()),
                "sha256": hashlib.sha256(cfg.holdout.read_bytes()).hexdigest(),
                "pairs_listed": len(holdout),
                "pairs_found": len(found),
                "pairs_missing": sorted(f"{h}\t{s}" for h, s in holdout - found),
                "images": len(splits["holdout"]),
                "trained_images_checked": checked,  # train, val and test
                "excluded_from_training": True,
                "identical_drawings_dropped": len(icons) - sum(map(len, splits.values())),
            },
            "images_rendered": n_images,
            "render_seconds": round(render_seconds, 1),
            "images_per_second": round(n_images / max(render_seconds, 1e-6), 1),
            "build_seconds": round(time.time() - started, 1),
            "bytes_on_disk": sum(p.stat().st_size for p in stage.rglob("*") if p.is_file()),
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest
