"""The fixture build: splits, the holdout guarantee, captions, shards and the manifest."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unclip.data import build as build_mod
from unclip.data.build import HoldoutLeak, assign_splits, check_holdout
from unclip.data.captions import style_names
from unclip.data.emoji import join_icons, load_emojibase, load_holdout
from unclip.data.shards import ShardWriter, iter_samples, split_name
from unclip.data.sources import STYLES, fetch_all

from .conftest import HOLDOUT, SIZES, fixture_config, make_cache

HELD_KEYS = {
    "twemoji_1F44B",
    "twemoji_1F44B-1F3FB",
    "twemoji_1F44B-1F3FF",  # every skin tone of a held-out pair
    "noto_1F605",
    "openmoji_2764",
    "fluent-emoji-flat_1F44D",
    "fluent-emoji-flat_1F44D-1F3FD",
}


def samples(out: Path, size: int = 16) -> dict[str, list[dict]]:
    """Per split, the json of every sample in the shards."""
    found: dict[str, list[dict]] = {}
    for path in sorted((out / "shards" / str(size)).glob("*.tar")):
        for s in iter_samples([path]):
            meta = json.loads(s["json"])
            assert path.name.startswith(meta["split"] + "-")
            found.setdefault(meta["split"], []).append(meta)
    return found


def test_manifest(built: tuple[Path, dict]) -> None:
    out, m = built
    assert json.loads((out / "manifest.json").read_text()) == m
    assert m["name"] == "unclip-emoji" and m["sizes"] == list(SIZES) and m["locales"] == ["de", "en", "ja"]
    assert set(m["sources"]) == {*STYLES, "captions"}
    assert m["sources"]["openmoji"] == {
        "package": "@iconify-json/openmoji",
        "version": "1.2.29",
        "license": "CC-BY-SA-4.0",
        "attribution": "OpenMoji © HfG Schwäbisch Gmünd",
    }
    assert m["join"]["twemoji"] == {"icons": 12, "joined": 10, "joined_by_name": 0, "dropped": 2}
    assert sum(c["total"] for c in m["counts"].values()) == 53
    assert m["images_per_size"] == {"16": 53, "32": 53} and m["images_rendered"] == 106
    h = m["holdout"]
    assert h["pairs_listed"] == 5 and h["pairs_found"] == 4 and h["images"] == 7
    assert h["pairs_missing"] == ["1F9FF\temojione"] and h["excluded_from_training"] is True
    assert h["trained_images_checked"] == sum(m["counts"][s]["total"] for s in ("train", "val", "test"))
    assert h["identical_drawings_dropped"] == 0
    assert Path(h["file"]) == HOLDOUT.resolve() and len(h["sha256"]) == 64
    assert m["images_per_second"] > 0 and m["render_seconds"] >= 0 and m["bytes_on_disk"] > 0
    for paths in m["shards"].values():
        assert all((out / p).is_file() for p in paths)
    assert {s for s, c in m["counts"].items() if c["total"]} == {"train", "val", "test", "holdout"}


def test_holdout_pairs_and_their_skin_tones_stay_out_of_train_and_val(built: tuple[Path, dict]) -> None:
    out, _ = built
    by_split = samples(out)
    assert {m["key"] for m in by_split["holdout"]} == HELD_KEYS
    held = load_holdout(HOLDOUT)
    for split in ("train", "val"):
        assert not [m["key"] for m in by_split[split] if (m["base_hexcode"], m["style"]) in held]
    # only the pair is held out: the same emoji in its other styles is trained on
    train = {m["key"] for m in by_split["train"]}
    assert {
        "openmoji_1F44B",
        "fluent-emoji_1F44B-1F3FB",
        "twemoji_1F605",
        "noto_2764",
        "twemoji_1F44D",
    } <= train


def test_splits_are_by_emoji(built: tuple[Path, dict]) -> None:
    out, _ = built
    where: dict[str, set[str]] = {}
    for split, metas in samples(out).items():
        for m in metas:
            if split != "holdout":
                where.setdefault(m["base_hexcode"], set()).add(split)
    assert all(len(s) == 1 for s in where.values()), where  # skin tones and styles travel with their emoji


def test_leak_assertion_fires(
    cache_dir: Path, no_npm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    style_dirs, emojibase_dir = fetch_all(cache_dir / "npm")
    icons, _ = join_icons(style_dirs, load_emojibase(emojibase_dir, ("en",)))
    cfg = fixture_config(tmp_path / "out", cache_dir)
    holdout = load_holdout(HOLDOUT)
    splits = assign_splits(icons, holdout, cfg)
    assert check_holdout(splits, holdout) > 0
    skin = next(i for i in splits["holdout"] if i.entry.hexcode == "1F44B-1F3FF")
    leaky = {**splits, "val": [*splits["val"], skin]}
    with pytest.raises(HoldoutLeak, match="1F44B-1F3FF"):
        check_holdout(leaky, holdout)
    # and the build refuses whatever assign_splits returns
    monkeypatch.setattr(build_mod, "assign_splits", lambda *a: leaky)
    with pytest.raises(HoldoutLeak):
        build_mod.build(cfg)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_captions_in_several_locales_with_the_style_named_in_varied_ways(built: tuple[Path, dict]) -> None:
    out, _ = built
    metas = [m for ms in samples(out).values() for m in ms]
    named, unnamed, phrases_seen = 0, 0, Counter()
    for m in metas:
        caps = m["captions"]
        assert "en" in caps and set(caps) <= {"en", "de", "ja"}
        assert caps["en"][0] == m["label"]  # the plain label is always one of them
        for locale, locale_caps in caps.items():
            assert len(set(locale_caps)) == len(locale_caps) >= 1
            for c in locale_caps:
                hits = [p for p in style_names(m["style"], locale) if p in c]
                named += bool(hits)
                unnamed += not hits
                phrases_seen.update((m["style"], p) for p in hits)
    assert named > 20 and unnamed > 20
    assert max(Counter(s for s, _ in phrases_seen).values()) >= 2  # a style named in more than one way
    by_key = {m["key"]: m for m in metas}
    assert set(by_key["twemoji_1F600"]["captions"]) == {"en", "de", "ja"}
    assert "de" not in by_key["openmoji_1F355"]["captions"]  # no German label for pizza in the fixture
    assert any("にっこり笑う" in c for c in by_key["twemoji_1F600"]["captions"]["ja"])
    assert by_key["twemoji_1F44B-1F3FF"]["skin_tone"] == [5]
    assert by_key["twemoji_1F44B-1F3FF"]["base_hexcode"] == "1F44B"


def test_images_are_rgb_on_white_with_alpha_kept(built: tuple[Path, dict]) -> None:
    out, _ = built
    for size in SIZES:
        sample = next(iter_samples(sorted((out / "shards" / str(size)).glob("train-*.tar"))))
        assert {"png", "alpha.png", "txt", "json"} <= set(sample)
        meta = json.loads(sample["json"])
        assert sample["txt"].decode() == meta["captions"]["en"][-1]
        rgb = np.asarray(Image.open(io.BytesIO(sample["png"])))
        alpha = np.asarray(Image.open(io.BytesIO(sample["alpha.png"])))
        assert rgb.shape == (size, size, 3) and alpha.shape == (size, size)
        assert (rgb[alpha == 0] == 255).all()  # transparent means white
        assert alpha.min() == 0 and alpha.max() == 255


def test_build_is_reproducible(built: tuple[Path, dict], tmp_path: Path, no_npm: None) -> None:
    out, _ = built
    again = tmp_path / "again"
    build_mod.build(fixture_config(again, make_cache(tmp_path / "cache")))  # a cold render cache too
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert files == sorted(
        p.relative_to(again) for p in again.rglob("*") if p.is_file() and p.name != "manifest.json"
    )
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_a_rebuild_leaves_no_stale_shards(tmp_path: Path, cache_dir: Path, no_npm: None) -> None:
    out = tmp_path / "out"
    (out / "shards" / "16").mkdir(parents=True)
    (out / "shards" / "16" / "train-00042.tar").write_bytes(b"")
    build_mod.build(fixture_config(out, cache_dir, sizes=(16,)))
    assert not (out / "shards" / "16" / "train-00042.tar").exists()


def test_shard_round_trip(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "train", max_count=2) as w:
        for i in range(5):
            w.write(
                f"k{i}", {"png": bytes([i]) * 3, "alpha.png": b"a", "txt": f"caption {i}", "json": {"i": i}}
            )
    assert [p.name for p in w.paths] == [f"train-0000{i}.tar" for i in range(3)] and w.total == 5
    got = list(iter_samples(w.paths))
    assert [s["__key__"] for s in got] == [f"k{i}" for i in range(5)]
    assert (
        got[3]["png"] == b"\x03\x03\x03"
        and got[3]["txt"] == b"caption 3"
        and json.loads(got[3]["json"]) == {"i": 3}
    )
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError), ShardWriter(tmp_path, "bad") as w:
        w.write("a.b", {"txt": "x"})
    assert split_name("dir/sub/0001.alpha.png") == ("dir/sub/0001", "alpha.png")


def test_a_drawing_identical_to_a_held_out_one_is_not_trained_on(
    cache_dir: Path, no_npm: None, tmp_path: Path
) -> None:
    from dataclasses import replace

    style_dirs, emojibase_dir = fetch_all(cache_dir / "npm")
    icons, _ = join_icons(style_dirs, load_emojibase(emojibase_dir, ("en",)))
    holdout = load_holdout(HOLDOUT)
    held = next(i for i in icons if (i.entry.base, i.style) in holdout)
    twin = next(i for i in icons if i.style == held.style and i.entry.base != held.entry.base)
    icons = [replace(i, svg=held.svg) if i is twin else i for i in icons]  # a set that draws two emoji alike
    splits = assign_splits(icons, holdout, fixture_config(tmp_path / "out", cache_dir))
    assert not [i for s in ("train", "val", "test") for i in splits[s] if i.svg == held.svg and i.style == held.style]
    assert sum(map(len, splits.values())) == len(icons) - 1
    leaky = {**splits, "train": [*splits["train"], replace(twin, svg=held.svg)]}
    with pytest.raises(HoldoutLeak, match="drawn exactly as a holdout image"):
        check_holdout(leaky, holdout)


def test_holdout_file_styles_are_checked_and_the_header_is_optional(tmp_path: Path) -> None:
    f = tmp_path / "holdout.tsv"
    f.write_text("1F928\tTwemoji\n1f605\tnoto\tgrinning face with sweat\n")
    assert load_holdout(f) == {("1F928", "twemoji"), ("1F605", "noto")}
    f.write_text("hexcode\tstyle\n1F928\ttwemojii\n")
    with pytest.raises(ValueError, match=r"holdout.tsv:2: .*twemojii"):
        load_holdout(f)


def test_a_drawing_that_cannot_be_rendered_is_named_and_the_dataset_kept(
    built: tuple[Path, dict], cache_dir: Path, no_npm: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(built[0], out)
    files = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(svg: str, size: int, cache: Path) -> tuple[bytes, bytes]:
        raise ValueError("expected 'circle' tag")

    monkeypatch.setattr(build_mod, "cached_render", broken)
    cfg = fixture_config(out, cache_dir)
    cfg.workers = 1
    with pytest.raises(ValueError, match=r"cannot render [a-z-]+_[0-9A-F-]+: expected 'circle' tag"):
        build_mod.build(cfg)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files
