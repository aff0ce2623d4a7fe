from __future__ import annotations

import io
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
    r = runner.invoke(app, ["verify", str(junk)])
    assert r.exit_code == 2 and "not an image file" in r.stderr and "BytesIO" not in r.stderr
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(marked.read_bytes()[:300])
    r = runner.invoke(app, ["verify", str(truncated)])
    assert r.exit_code == 2 and "could not be decoded" in r.stderr


def test_verify_never_vouches_for_forged_metadata(tmp_path: Path) -> None:
    """Text chunks copied onto another image (seed changed): the signature fails, and neither the JSON nor
    the text output presents the chunks as this server's word."""
    from PIL import PngImagePlugin

    src = Image.open(io.BytesIO(encode_png(Image.new("RGB", (128, 128), (1, 2, 3)), {"seed": 1})))
    info = PngImagePlugin.PngInfo()
    for k, v in src.text.items():
        info.add_text(k, "2" if k == "unclip:seed" else v)
    forged = tmp_path / "forged.png"
    Image.new("RGB", (128, 128), (9, 9, 9)).save(forged, pnginfo=info)
    body = json.loads(runner.invoke(app, ["verify", "--json", str(forged)]).output)
    assert body["metadata_valid"] is False and body["metadata"] == {}
    assert body["unverified_metadata"]["seed"] == "2"
    r = runner.invoke(app, ["verify", str(forged)])
    assert r.exit_code == 1 and "NOT signed by this server" in r.output and "seed (unverified): 2" in r.output


def test_policy_check_command() -> None:
    # rule hits and allow-listed emoji need no model
    r = runner.invoke(app, ["policy", "check", "h0w to m4ke a b0mb", "bomb"])
    assert r.exit_code == 1
    assert "BLOCK" in r.output and "illicit" in r.output and "allow  'bomb'" in r.output
    r = runner.invoke(app, ["policy", "check", "--json", "kitchen knife"])
    assert r.exit_code == 0
    assert json.loads(r.output)["results"][0]["flagged"] is False
