"""scripts/train_gpu.sh as a device run uses it: upsamplers only, shipped back as flat files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def run_script(data: Path, tmp_path: Path, **settings: str) -> Path:
    """scripts/train_gpu.sh with the tiny config and these settings; returns the SHIP folder (what the script
    printed is left in tmp_path/stdout.txt)."""
    ship = tmp_path / "out"
    env = os.environ | {
        "CONFIG": "tiny",
        "DATA": str(data),
        "RUN": str(tmp_path / "run"),
        "SHIP": str(ship),
        "BUDGET_SECONDS": "600",
        "PYTHON": sys.executable,
        **settings,
    }
    done = subprocess.run(
        ["bash", "scripts/train_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (tmp_path / "stdout.txt").write_text(done.stdout)
    return ship


@pytest.mark.slow
def test_upsampler_box_ships_packed_weights_logs_and_figures(emoji64: Path, tmp_path: Path) -> None:
    ship = run_script(emoji64, tmp_path, STAGES="upsampler-256 upsampler-1024", EVAL_N="2")

    files = sorted(p.name for p in ship.iterdir())
    assert files == [
        "cascade.json",
        "eval.json",
        "logs.tar",
        "model.tar.part-aa",
    ]  # flat, as a device run gets them
    assert all(p.stat().st_size <= 15 * 2**20 for p in ship.iterdir())

    parts = b"".join(p.read_bytes() for p in sorted(ship.glob("model.tar.part-*")))
    with tarfile.open(fileobj=io.BytesIO(parts)) as tar:
        tar.extractall(tmp_path / "back", filter="data")
    for stage in ("upsampler-256", "upsampler-1024"):
        weights = load_file(tmp_path / "back" / "packed" / stage / "diffusion_pytorch_model.safetensors")
        assert {str(t.dtype) for t in weights.values()} == {"torch.float16"}

    with tarfile.open(ship / "logs.tar") as tar:
        names = set(tar.getnames())
    assert {"log-upsampler-256.txt", "./upsampler-1024/summary.json", "./upsampler-256/metrics.csv"} <= names

    figures = json.loads((ship / "eval.json").read_text())["upsampler"]
    assert set(figures) == {"64->256", "256->1024"}
    assert all(f["psnr"]["learned"] > 0 for f in figures.values())


@pytest.mark.slow
def test_warm_started_decoders_continue_a_trained_model(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    ship = run_script(emoji64, tmp_path, INIT_FROM=str(tiny_model), STAGES="decoder inpaint", EVAL_N="2")
    for stage in ("decoder", "inpaint"):  # a few steps from the trained weights, not from a new init
        start = load_file(next((tiny_model / stage / "unet").glob("*.safetensors")))
        trained = load_file(next((tmp_path / "run" / "model" / stage / "unet").glob("*.safetensors")))
        drift = max(float((trained[k].float() - v.float()).abs().max()) for k, v in start.items())
        assert 0 < drift < 0.05, (stage, drift)
    cascade = json.loads((ship / "cascade.json").read_text())["cascade"]
    assert "decoder" in cascade["rows"] and cascade["prompts"]["seen"] == 2


@pytest.mark.slow
def test_a_decoder_call_that_carries_only_the_parts_it_reads(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    """As a device call whose tree is too small for the whole model: the vision tower and the decoder only."""
    import shutil

    partial = tmp_path / "parts"
    shutil.copytree(tiny_model / "prior" / "image_encoder", partial / "prior" / "image_encoder")
    shutil.copytree(tiny_model / "decoder", partial / "decoder")
    ship = run_script(emoji64, tmp_path, INIT_FROM=str(partial), STAGES="decoder", SKIP_EVAL="1")
    assert sorted(p.name for p in ship.iterdir()) == ["logs.tar", "model.tar.part-aa"]
    parts = b"".join(p.read_bytes() for p in sorted(ship.glob("model.tar.part-*")))
    with tarfile.open(fileobj=io.BytesIO(parts)) as tar:
        names = tar.getnames()
    assert any(n.startswith("packed/decoder/unet/") for n in names)


@pytest.mark.slow
def test_chained_text_side_tunes_the_tower_then_the_prior_on_it(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    run_script(emoji64, tmp_path, INIT_FROM=str(tiny_model), STAGES="clip prior", CHAIN="1", SKIP_EVAL="1")
    run = tmp_path / "run"
    printed = (tmp_path / "stdout.txt").read_text()
    assert 0 <= printed.index("clip done") < printed.index("prior done")  # one after the other
    assert json.loads((run / "prior" / "summary.json").read_text())
    tower = load_file(next((run / "model" / "prior" / "text_encoder").glob("*.safetensors")))
    shipped = load_file(next((tiny_model / "prior" / "text_encoder").glob("*.safetensors")))
    assert any(not tower[k].float().equal(v.float()) for k, v in shipped.items())  # the tower was tuned


@pytest.mark.slow
def test_a_decoder_call_with_only_the_parts_it_carries(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    """What scripts/gpu_prepare.sh sends: the decoder and the CLIP image tower, no other weights; no MAX_MINUTES
    (the stage gets the box), SKIP_EVAL (judged back here)."""
    import shutil

    carried = tmp_path / "carried"
    shutil.copytree(tiny_model / "decoder", carried / "decoder")
    shutil.copytree(tiny_model / "prior" / "image_encoder", carried / "prior" / "image_encoder")
    ship = run_script(emoji64, tmp_path, INIT_FROM=str(carried), STAGES="decoder", SKIP_EVAL="1",
                      BUDGET_SECONDS="75", SHIP_SECONDS="55", BATCH_SIZE="auto")  # fmt: skip
    out = (tmp_path / "stdout.txt").read_text()
    assert "each stage trains for 0." in out and "decoder done" in out
    summary = json.loads((tmp_path / "run" / "decoder" / "summary.json").read_text())
    config = json.loads((ROOT / "configs" / "tiny.json").read_text())["decoder"]["train"]
    assert (summary["batch_size"], summary["learning_rate"]) == (config["batch_size"], config["lr"])  # auto on a CPU
    assert "not on a GPU" in (tmp_path / "run" / "log-decoder.txt").read_text()
    assert sorted(p.name for p in ship.iterdir()) == ["logs.tar", "model.tar.part-aa"]
    with tarfile.open(fileobj=io.BytesIO((ship / "model.tar.part-aa").read_bytes())) as tar:
        names = tar.getnames()
    assert "packed/decoder/unet/diffusion_pytorch_model.safetensors" in names
    assert not [n for n in names if n.startswith(("packed/inpaint", "packed/prior/prior", "packed/upsampler"))]


def test_movq_beside_the_decoders_is_refused(emoji64: Path, tmp_path: Path) -> None:
    env = os.environ | {"CONFIG": "tiny", "DATA": str(emoji64), "RUN": str(tmp_path / "run"),
                        "PYTHON": sys.executable, "STAGES": "movq decoder"}  # fmt: skip
    done = subprocess.run(["bash", "scripts/train_gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "CHAIN=1" in done.stdout
