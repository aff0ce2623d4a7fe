"""`unclip bench` pieces: the run on the tiny model (one small configuration), the report, the doc section."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from unclip.cli import app
from unclip.cli.bench import MARKER, write_section


def test_bench_on_tiny_model(tiny_model: Path) -> None:
    from unclip.engine.bench import BenchConfig, run_bench, targets, to_markdown

    cfg = BenchConfig(
        model=tiny_model,
        sizes=(256,),
        ns=(1,),
        repeats=1,
        threads=1,
        quality_prompts=("grinning face", "pizza"),
        quality_per_prompt=1,
    )
    lines: list[str] = []
    result = run_bench(cfg, log=lines.append)
    (row,) = result.rows
    s = row.summary()
    assert s["stock_s"] > 0 and s["engine_s"] > 0 and s["speedup"] > 1  # 100 + 25 steps against 12 + 12
    assert s["engine_rss_mb"] > 50
    # the stage timer saw both sides' stages, and they account for most of the CPU time
    for side in ("stock", "engine"):
        st = row.stages[side]
        assert st["prior"] > 0 and st["decoder"] > 0 and st["upsampling"] > 0 and st["movq"] > 0
        assert sum(st.values()) <= sum(m.cpu for m in getattr(row, side)) * 1.05 + 0.05
    assert set(result.quality) == {"stock", "engine"} and result.quality["engine"]["images"] == 2
    assert 256 in result.upsampling
    md = to_markdown(result, "unclip bench --model tiny")
    assert "`unclip bench --model tiny`" in md and "| 256 | 1 |" in md and "Where the time goes" in md
    names = [t[0] for t in targets(result)]
    assert any("3×" in n for n in names) and any("quality" in n for n in names)
    assert any("stock" in line and "wall" in line for line in lines)


def test_write_section_replaces_only_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nIntro kept.\n")
    write_section(doc, "## Run 1\n", key="--sizes 256")
    write_section(doc, "## Run 2\n", key="--sizes 256")
    write_section(doc, "## Other config\n", key="--sizes 1024")
    text = doc.read_text()
    assert text.startswith("# Performance\n\nIntro kept.\n")
    assert text.count(MARKER.format(key="--sizes 256")) == 1
    assert "## Run 2" in text and "## Run 1" not in text and "## Other config" in text
    assert text.index("## Run 2") < text.index("## Other config")
    doc.write_text(text + "\nAfterword.\n")
    write_section(doc, "## Run 3\n", key="--sizes 256")
    text = doc.read_text()
    assert text.endswith("Afterword.\n") and "## Run 3" in text and "## Other config" in text


def test_bench_rejects_bad_options() -> None:
    runner = CliRunner()
    for args in (["--sizes", "300"], ["--n", "0"], ["--n", "x"], ["--repeats", "0"]):
        r = runner.invoke(app, ["bench", *args])
        assert r.exit_code == 2, (args, r.output)
