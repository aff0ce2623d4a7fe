"""`unclip data import`: a user's own images into the layout `unclip train --data` reads.

Two kinds of source:
- a folder of images (png, jpg, jpeg, webp; sub-folders too), each with a caption file of the same name
  ending in `.txt` (every non-empty line is one caption); images without one are skipped and counted;
- WebDataset shards (a folder of .tar files, a glob, a brace range): ours or img2dataset's output
  (image + txt + optional json). A json's "captions", "style", "base_hexcode" and "split" are kept, and
  so are the licences (`sources`) in the manifest.json of the dataset the shards come from.

Out: `OUT/shards/{size}/{train,val,test}-NNNNN.tar` (png RGB on white, alpha.png, txt, json) and
`OUT/manifest.json`, as `unclip data build emoji` writes them. Each image is its own "emoji" (its
base_hexcode is its key) unless the source says otherwise; splits are a stable hash of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unclip.data.loader import (
    FITS,
    IMAGE_EXTS,
    SHARD_SUFFIXES,
    decode_image,
    expand_shards,
    image_ext,
    sample_meta,
)
from unclip.data.render import png_bytes
from unclip.data.shards import ShardWriter, iter_samples
from unclip.data.sources import STYLES
from unclip.data.staging import staged

SPLITS = ("train", "val", "test", "holdout")
USER_STYLE = "user"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class ImportConfig:
    src: Path
    out: Path
    sizes: tuple[int, ...] = (64,)
    fit: str = "pad"
    style: str = USER_STYLE
    locale: str = "en"  # the language of the .txt captions
    val_percent: int = 4
    test_percent: int = 8
    workers: int = 1
    shard_size: int = 2000


@dataclass
class _Item:
    key: str
    image: bytes
    alpha: bytes | None
    captions: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)


def source_kind(src: Path) -> str:
    """ "folder" (images with .txt captions) or "webdataset" (tar shards)."""
    if any(c in str(src) for c in "*?{"):
        return "webdataset"
    if src.is_file():
        if not src.name.lower().endswith(SHARD_SUFFIXES):
            raise ValueError(f"{src} is a single file that is not a tar shard ({', '.join(SHARD_SUFFIXES)}): "
                             "to import images, give the folder that holds them")  # fmt: skip
        return "webdataset"
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is neither a folder nor shards")
    has_images = any(p.suffix.lower().lstrip(".") in IMAGE_EXTS for p in src.rglob("*") if p.is_file())
    return "folder" if has_images else "webdataset"


def safe_key(text: str) -> str:
    """A WebDataset key (no '.' or '/') from a path or key, readable and stable."""
    return _UNSAFE.sub("_", text).strip("_")[-96:] or "sample"


def _folder_items(src: Path, cfg: ImportConfig, skipped: Counter) -> Iterator[_Item]:
    images = sorted(
        p
        for p in src.rglob("*")
        if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTS and p.stem[:1] != "."
    )
    for path in images:
        txt = path.with_suffix(".txt")
        captions = (
            [
                line.strip()
                for line in txt.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip()
            ]
            if txt.exists()
            else []
        )
        if not captions:
            skipped["no_caption"] += 1
            continue
        rel = path.relative_to(src).with_suffix("").as_posix()
        yield _Item(
            rel,
            path.read_bytes(),
            None,
            {cfg.locale: captions},
            {"source_path": path.relative_to(src).as_posix()},
        )


def _shard_items(src: Path, cfg: ImportConfig, skipped: Counter) -> Iterator[_Item]:
    for sample in iter_samples(expand_shards(src)):
        ext = image_ext(sample)
        if ext is None:
            skipped["no_image"] += 1
            continue
        meta = sample_meta(sample)
        captions: dict[str, list[str]] = {}
        if isinstance(meta.get("captions"), dict):
            captions = {loc: [c for c in cs if c] for loc, cs in meta["captions"].items() if cs}
        txt = sample.get("txt", b"").decode("utf-8", "replace")
        lines = [line.strip() for line in txt.splitlines() if line.strip()]
        if not lines and isinstance(meta.get("caption"), str) and meta["caption"].strip():
            lines = [meta["caption"].strip()]  # img2dataset keeps the caption in its json too
        own = captions.setdefault(cfg.locale, [])
        own.extend(c for c in lines if c not in own)
        captions = {loc: cs for loc, cs in captions.items() if cs}
        if not captions:
            skipped["no_caption"] += 1
            continue
        yield _Item(sample["__key__"], sample[ext], sample.get("alpha.png"), captions, meta)


def _convert(args: tuple[bytes, bytes | None, tuple[int, ...], str]) -> dict[int, tuple[bytes, bytes]] | str:
    data, alpha, sizes, fit = args
    try:
        out = {}
        for size in sizes:
            rgb, a = decode_image(data, size, fit, alpha)
            out[size] = (png_bytes(rgb), png_bytes(a))
        return out
    except Exception as exc:  # an unreadable image is skipped, not fatal
        return f"{type(exc).__name__}: {exc}"


def _bounded_map(fn: Callable, items: Iterable, pool: ProcessPoolExecutor | None, window: int) -> Iterator:
    """pool.map over `items` in order, holding at most `window` items in flight (images can be many)."""
    if pool is None:
        yield from map(fn, items)
        return
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == window:
            yield from pool.map(fn, chunk, chunksize=max(1, window // 32))
            chunk = []
    if chunk:
        yield from pool.map(fn, chunk, chunksize=max(1, len(chunk) // 32))


def source_licences(src: Path) -> dict[str, dict]:
    """The `sources` block (package, version, licence, attribution per style) of the datasets whose shards
    `src` names: each shard's nearest manifest.json, up to three folders above it (OUT/shards/SIZE/x.tar)."""
    found: dict[str, dict] = {}
    seen: set[Path] = set()
    for shard in expand_shards(src):
        for folder in list(shard.resolve().parents)[:3]:
            manifest = folder / "manifest.json"
            if manifest in seen:
                break
            if manifest.is_file():
                seen.add(manifest)
                try:
                    sources = json.loads(manifest.read_text()).get("sources")
                except (OSError, ValueError, AttributeError):
                    break
                if isinstance(sources, dict):
                    found.update({k: v for k, v in sources.items() if isinstance(v, dict)})
                break
    return found


def split_for(base: str, cfg: ImportConfig) -> str:
    bucket = int(hashlib.md5(base.encode()).hexdigest(), 16) % 100
    if bucket < cfg.test_percent:
        return "test"
    return "val" if bucket < cfg.test_percent + cfg.val_percent else "train"


def import_data(cfg: ImportConfig, progress: Callable[[str, int, int | None], None] | None = None) -> dict:
    """Convert cfg.src into cfg.out; returns the manifest (also written to cfg.out/manifest.json)."""
    if cfg.fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}")
    kind = source_kind(cfg.src)
    with staged(cfg.out) as stage:  # a failed or interrupted import leaves the dataset in place as it was
        return _import_into(stage, kind, cfg, progress)


def _import_into(stage: Path, kind: str, cfg: ImportConfig, progress: Callable | None) -> dict:
    started = time.time()
    skipped: Counter = Counter()
    licences = source_licences(cfg.src) if kind == "webdataset" else {}
    items = (_folder_items if kind == "folder" else _shard_items)(cfg.src, cfg, skipped)
    writers = {
        (s, size): ShardWriter(stage / "shards" / str(size), s, max_count=cfg.shard_size)
        for s in SPLITS
        for size in cfg.sizes
    }
    counts: dict[str, Counter] = {s: Counter() for s in SPLITS}
    bases: dict[str, set[str]] = {s: set() for s in SPLITS}
    keys: set[str] = set()
    locales: set[str] = set()
    pending: deque[_Item] = deque()  # items travel beside their conversion jobs, in order

    def jobs() -> Iterator[tuple[bytes, bytes | None, tuple[int, ...], str]]:
        for item in items:
            pending.append(item)
            yield item.image, item.alpha, cfg.sizes, cfg.fit

    n_images = done = 0
    pool = ProcessPoolExecutor(max_workers=cfg.workers) if cfg.workers > 1 else None
    try:
        for result in _bounded_map(_convert, jobs(), pool, window=256):
            item = pending.popleft()
            done += 1
            if isinstance(result, str):
                skipped["unreadable"] += 1
                continue
            key = safe_key(item.key)
            if key in keys:
                key = f"{key[:80]}_{hashlib.sha1(item.key.encode()).hexdigest()[:10]}"
            keys.add(key)
            src_split = item.meta.get("split")
            base = str(item.meta.get("base_hexcode") or key)
            split = src_split if src_split in SPLITS else split_for(base, cfg)
            style = str(item.meta.get("style") or cfg.style)
            meta = {
                **{k: v for k, v in item.meta.items() if k not in ("captions", "key", "split")},
                "key": key,
                "base_hexcode": base,
                "style": style,
                "captions": item.captions,
                "split": split,
            }
            txt = (item.captions.get(cfg.locale) or next(iter(item.captions.values())))[0]
            for size, (rgb, alpha) in result.items():
                writers[(split, size)].write(key, {"png": rgb, "alpha.png": alpha, "txt": txt, "json": meta})
                n_images += 1
            counts[split][style] += 1
            bases[split].add(base)
            locales.update(item.captions)
            if progress:
                progress("import", done, None)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        for w in writers.values():
            w.close()
    seconds = time.time() - started
    total = sum(sum(c.values()) for c in counts.values())
    if total == 0:
        raise ValueError(f"no usable images in {cfg.src} (skipped: {dict(skipped) or 'none found'})")
    manifest = {
        "name": f"user:{cfg.src.name}",
        "kind": "import",
        "source": str(cfg.src),
        "source_format": kind,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sizes": list(cfg.sizes),
        "fit": cfg.fit,
        "locales": sorted(locales),
        "counts": {s: dict(c) | {"total": sum(c.values())} for s, c in counts.items() if c},
        # the licences of the datasets imported, for the styles kept (and their captions' source)
        "sources": {k: v for k, v in licences.items() if k not in STYLES or any(k in c for c in counts.values())},
        "emoji_per_split": {s: len(b) for s, b in bases.items() if b},
        "skipped": dict(skipped),
        "shards": {
            f"{size}/{s}": [str(p.relative_to(stage)) for p in writers[(s, size)].paths]
            for s in SPLITS
            for size in cfg.sizes
            if writers[(s, size)].paths
        },
        "images_per_size": {
            str(size): sum(w.total for (_, sz), w in writers.items() if sz == size) for size in cfg.sizes
        },
        "images_rendered": n_images,
        "images_per_second": round(n_images / max(seconds, 1e-6), 1),
        "build_seconds": round(seconds, 1),
        "bytes_on_disk": sum(p.stat().st_size for p in (stage / "shards").rglob("*") if p.is_file()),
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest
