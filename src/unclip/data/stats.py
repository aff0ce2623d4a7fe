"""`unclip data stats`: what a dataset folder holds, from its manifest and from the shards themselves."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from unclip.data.emoji import base_hexcode, load_holdout
from unclip.data.loader import IMAGE_EXTS, shard_sizes
from unclip.data.shards import split_name

SPLIT_ORDER = ("train", "val", "test", "holdout")
DEFAULT_HOLDOUT = Path(__file__).resolve().parent / "holdout.tsv"


def _split_of(path: Path) -> str:
    return path.name.rsplit("-", 1)[0] if "-" in path.name else path.name.split(".")[0]


def scan_shards(data_dir: Path) -> dict[str, Any]:
    """Per size and split: samples, shards and bytes; per split and style: samples (from the json of the
    smallest size); and every (base_hexcode, style, split) seen, for the holdout check."""
    sizes = shard_sizes(data_dir)
    out: dict[str, Any] = {"sizes": {}, "styles": {}, "pairs": set()}
    for size in sizes:
        per_split: dict[str, dict[str, int]] = {}
        for path in sorted((data_dir / "shards" / str(size)).glob("*.tar")):
            split = _split_of(path)
            entry = per_split.setdefault(split, {"samples": 0, "shards": 0, "bytes": 0})
            entry["shards"] += 1
            entry["bytes"] += path.stat().st_size
            styles: Counter = Counter()
            with tarfile.open(path) as tar:  # seekable: image data is skipped, only json is read
                for m in tar:
                    ext = split_name(m.name)[1]
                    if ext in IMAGE_EXTS:
                        entry["samples"] += 1
                    elif ext == "json":
                        fh = tar.extractfile(m)
                        meta = json.loads(fh.read()) if fh else {}
                        style = str(meta.get("style", "?"))
                        styles[style] += 1
                        if "base_hexcode" in meta:
                            out["pairs"].add(
                                (base_hexcode(str(meta.get("hexcode") or meta["base_hexcode"])), style, split)
                            )
            if size == sizes[0]:
                agg = out["styles"].setdefault(split, Counter())
                agg.update(styles)
        out["sizes"][size] = per_split
    return out


def dataset_stats(data_dir: Path) -> dict[str, Any]:
    """Everything `unclip data stats` shows, as plain data."""
    manifest_path = data_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    scan = scan_shards(data_dir)
    if not scan["sizes"]:
        raise FileNotFoundError(f"no shards in {data_dir}/shards/ — build or import a dataset first")
    styles = sorted({s for c in scan["styles"].values() for s in c})
    splits = [s for s in SPLIT_ORDER if s in scan["styles"]] + sorted(set(scan["styles"]) - set(SPLIT_ORDER))
    holdout: dict[str, Any] = dict(manifest.get("holdout") or {})
    ho_file = Path(holdout["file"]) if holdout.get("file") else None
    if ho_file is not None and not ho_file.is_absolute() and not ho_file.exists():
        ho_file = (data_dir / ho_file) if (data_dir / ho_file).exists() else None
    if ho_file is None and manifest.get("name") == "unclip-emoji":
        ho_file = DEFAULT_HOLDOUT
    if ho_file is not None and ho_file.exists():
        pairs = load_holdout(ho_file)
        leaks = sorted(
            {(b, s, sp) for b, s, sp in scan["pairs"] if sp in ("train", "val") and (b, s) in pairs}
        )
        holdout.update(
            {
                "checked_file": str(ho_file),
                "leaks_in_train_val": len(leaks),
                "leak_examples": leaks[:5],
                "pairs_in_holdout_shards": len({(b, s) for b, s, sp in scan["pairs"] if sp == "holdout"}),
            }
        )
    return {
        "data_dir": str(data_dir),
        "manifest": {
            k: manifest.get(k)
            for k in (
                "name",
                "kind",
                "source",
                "built_at",
                "sizes",
                "locales",
                "images_rendered",
                "images_per_second",
                "build_seconds",
                "bytes_on_disk",
                "large_limit_per_split",
                "skipped",
                "fit",
            )
            if k in manifest
        },
        "join": manifest.get("join", {}),
        "splits": splits,
        "styles": styles,
        "counts": {sp: dict(scan["styles"].get(sp, {})) for sp in splits},
        "emoji_per_split": manifest.get("emoji_per_split", {}),
        "sizes": {str(k): v for k, v in scan["sizes"].items()},
        "holdout": holdout,
        "bytes_on_disk": sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()),
    }


def print_stats(stats: dict[str, Any], console: Any) -> None:
    """Rich tables of `dataset_stats`."""
    from rich.table import Table

    m = stats["manifest"]
    head = Table(title=f"dataset {stats['data_dir']}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    for label, value in (
        ("name", m.get("name")),
        ("built", m.get("built_at")),
        ("source", m.get("source")),
        ("sizes (px)", ", ".join(map(str, m.get("sizes") or [int(s) for s in stats["sizes"]]))),
        ("locales", f"{len(m['locales'])}: {' '.join(m['locales'])}" if m.get("locales") else None),
        ("images", m.get("images_rendered")),
        (
            "build",
            f"{m['build_seconds']} s, {m.get('images_per_second')} images/s"
            if "build_seconds" in m
            else None,
        ),
        ("skipped", m.get("skipped") or None),
        ("on disk", f"{stats['bytes_on_disk'] / 1e6:.1f} MB"),
    ):
        if value not in (None, ""):
            head.add_row(label, str(value))
    console.print(head)

    splits, styles = stats["splits"], stats["styles"]
    counts = Table(title="images per split and style", title_justify="left")
    counts.add_column("style")
    for sp in splits:
        counts.add_column(sp, justify="right")
    counts.add_column("total", justify="right", style="bold")
    for st in styles:
        row = [stats["counts"][sp].get(st, 0) for sp in splits]
        counts.add_row(st, *map(str, row), str(sum(row)))
    totals = [sum(stats["counts"][sp].values()) for sp in splits]
    counts.add_row("[bold]total", *(f"[bold]{t}" for t in totals), str(sum(totals)))
    if stats["emoji_per_split"]:
        counts.add_row(
            "[dim]emoji" if m.get("name") == "unclip-emoji" else "[dim]groups",
            *(f"[dim]{stats['emoji_per_split'].get(sp, '')}" for sp in splits),
            "",
        )
    console.print(counts)

    sizes = Table(title="shards per size", title_justify="left")
    sizes.add_column("size", justify="right")
    for sp in splits:
        sizes.add_column(sp, justify="right")
    sizes.add_column("shards", justify="right")
    sizes.add_column("MB", justify="right")
    for size, per in stats["sizes"].items():
        sizes.add_row(
            f"{size}px",
            *(str(per.get(sp, {}).get("samples", 0)) for sp in splits),
            str(sum(v["shards"] for v in per.values())),
            f"{sum(v['bytes'] for v in per.values()) / 1e6:.1f}",
        )
    console.print(sizes)

    if stats["join"]:
        join = Table(title="join to emojibase by code point", title_justify="left")
        for col in ("style", "icons", "joined", "by name", "dropped"):
            join.add_column(col, justify="left" if col == "style" else "right")
        for st, j in stats["join"].items():
            join.add_row(
                st,
                str(j.get("icons", "")),
                str(j.get("joined", "")),
                str(j.get("joined_by_name", "")),
                str(j.get("dropped", "")),
            )
        console.print(join)

    h = stats["holdout"]
    if h:
        leaks = h.get("leaks_in_train_val")
        verdict = (
            "[dim]not checked" if leaks is None else ("[green]none ✓" if leaks == 0 else f"[red]{leaks} ✗")
        )
        console.print(
            f"[bold]holdout[/] pairs listed {h.get('pairs_listed', '?')}, found {h.get('pairs_found', '?')}, "
            f"images {h.get('images', '?')}; in train/val shards: {verdict}"
            + (f"  (e.g. {h['leak_examples']})" if leaks else "")
        )
