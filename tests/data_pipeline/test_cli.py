"""`unclip data build|import|show|stats` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from unclip.cli import app
from unclip.data import sheet
from unclip.data.shards import ShardWriter

from .conftest import HOLDOUT, image_bytes

runner = CliRunner()


def invoke(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_build_command(tmp_path: Path, cache_dir: Path, no_npm: None) -> None:
    out = tmp_path / "data"
    text = invoke(
        "data",
        "build",
        "emoji",
        "--out",
        out,
        "--cache",
        cache_dir,
        "--sizes",
        "16,24",
        "--locales",
        "de",
        "--locales",
        "ja",
        "--holdout",
        HOLDOUT,
        "--workers",
        "1",
    )
    assert "fluent-emoji" in text and "dropped" in text and "images/s" in text
    assert "holdout: 4 of 5 pairs found, 7 images" in text
    m = json.loads((out / "manifest.json").read_text())
    assert m["sizes"] == [16, 24] and m["locales"] == ["de", "en", "ja"]
    bad = runner.invoke(app, ["data", "build", "emoji", "--out", str(out), "--locales", "xx"])
    assert bad.exit_code != 0 and "unknown locales" in bad.output
    bad = runner.invoke(app, ["data", "build", "emoji", "--out", str(out), "--sizes", "big"])
    assert bad.exit_code != 0


def test_stats_command(built: tuple[Path, dict]) -> None:
    out, m = built
    text = invoke("data", "stats", "--data", out)
    for word in ("twemoji", "holdout", "none ✓", "16px", "32px", "joined", "on disk"):
        assert word in text
    stats = json.loads(invoke("data", "stats", "--data", out, "--json"))
    assert {sp: sum(c.values()) for sp, c in stats["counts"].items()} == {
        sp: c["total"] for sp, c in m["counts"].items()
    }
    assert stats["holdout"]["leaks_in_train_val"] == 0 and stats["sizes"]["32"]["holdout"]["samples"] == 7


def test_stats_reports_a_leak(built: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "leaky"
    shutil.copytree(built[0], out)
    meta = {
        "key": "twemoji_1F44B-1F3FB",
        "hexcode": "1F44B-1F3FB",
        "base_hexcode": "1F44B",
        "style": "twemoji",
        "split": "train",
        "captions": {"en": ["waving hand"]},
    }
    with ShardWriter(out / "shards" / "16", "train") as w:
        w.index = 99
        w.write(meta["key"], {"png": image_bytes(Image.new("RGB", (16, 16), "white"), "PNG"), "json": meta})
    result = runner.invoke(app, ["data", "stats", "--data", str(out)])
    assert result.exit_code == 1 and "1 ✗" in result.output


@pytest.mark.parametrize("fonts", [True, False])
def test_show_command(
    built: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fonts: bool
) -> None:
    if not fonts:  # no font files on the machine: PIL's own font
        monkeypatch.setattr(sheet, "font_file", lambda script: None)
        sheet.load_font.cache_clear()
    out = tmp_path / "sheet.png"
    text = invoke(
        "data",
        "show",
        "--data",
        built[0],
        "--size",
        "16",
        "--split",
        "train",
        "-n",
        "6",
        "--locales",
        "en,de,ja",
        "--out",
        out,
    )
    sheet.load_font.cache_clear()
    assert "6 samples" in text
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.width > 3 * 128 and im.height > 128


def test_import_command_then_show_and_stats(tmp_path: Path) -> None:
    src = tmp_path / "pics"
    src.mkdir()
    for i, colour in enumerate(["red", "green", "blue", "orange"]):
        Image.new("RGB", (32, 20), colour).save(src / f"{colour}.jpg")
        (src / f"{colour}.txt").write_text(f"a {colour} rectangle {i}")
    out = tmp_path / "data"
    text = invoke("data", "import", src, "--out", out, "--sizes", "16", "--workers", "1")
    assert "imported 4 images" in text
    invoke("data", "show", "--data", out, "--size", "16", "-n", "3", "--out", tmp_path / "s.png")
    stats = json.loads(invoke("data", "stats", "--data", out, "--json"))
    assert stats["styles"] == ["user"] and sum(sum(c.values()) for c in stats["counts"].values()) == 4
    bad = runner.invoke(app, ["data", "import", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code != 0


def test_show_reads_img2dataset_folders(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "web", "00000") as w:
        for i in range(3):
            w.write(
                f"{i:09d}",
                {"jpg": image_bytes(Image.new("RGB", (20, 30), "teal"), "JPEG"), "txt": f"teal {i}"},
            )
    invoke("data", "show", "--data", tmp_path / "web", "-n", "5", "--out", tmp_path / "web.png")
    assert (tmp_path / "web.png").stat().st_size > 0
