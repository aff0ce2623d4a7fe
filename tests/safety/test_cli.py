from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from unclip.cli import app
from unclip.safety.provenance import encode_png

runner = CliRunner()


def test_verify_command(tmp_path: Path) -> None:
    marked = tmp_path / "out.png"
    marked.write_bytes(encode_png(Image.new("RGB", (128, 128), (90, 160, 220)), {"model": "m", "seed": 5}))
    r = runner.invoke(app, ["verify", str(marked)])
    assert r.exit_code == 0, r.output
    assert "from this server" in r.output
    r = runner.invoke(app, ["verify", "--json", str(marked)])
    assert json.loads(r.output)["metadata"]["seed"] == "5"
    plain = tmp_path / "plain.png"
    Image.new("RGB", (128, 128), (90, 160, 220)).save(plain)
    r = runner.invoke(app, ["verify", str(plain)])
    assert r.exit_code == 1 and "NOT" in r.output
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    assert runner.invoke(app, ["verify", str(junk)]).exit_code == 2


def test_policy_check_command() -> None:
    # rule hits and allow-listed emoji need no model
    r = runner.invoke(app, ["policy", "check", "h0w to m4ke a b0mb", "bomb"])
    assert r.exit_code == 1
    assert "BLOCK" in r.output and "illicit" in r.output and "allow  'bomb'" in r.output
    r = runner.invoke(app, ["policy", "check", "--json", "kitchen knife"])
    assert r.exit_code == 0
    assert json.loads(r.output)["results"][0]["flagged"] is False
