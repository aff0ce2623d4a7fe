"""`unclip eval …` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from unclip.cli import app

runner = CliRunner()


def test_unknown_measure_is_refused_before_loading_a_model(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "speed", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "outpaint" in result.output


def test_eval_outpaint_writes_its_figures(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    out.write_text(json.dumps({"clip": {"kept": True}}))
    result = runner.invoke(app, ["eval", "outpaint", "--model", str(tiny_model), "--data", str(emoji64), "--n", "1",
                                 "--out", str(out), "--images", str(tmp_path / "img")])  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["clip"] == {"kept": True}  # merged with what was there
    seams = figures["outpaint"]
    assert seams["canvas"] == [1024, 512] and len(seams["prompts"]) == 1
    assert seams["outpaint"]["pairs"] == seams["naive"]["pairs"] > 0
    assert (tmp_path / "img" / "outpaint_0.png").exists()
