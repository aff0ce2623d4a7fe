"""The shipped training configs build every component, and the base config fits the bundled-model budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unclip.cli import app
from unclip.models import builders
from unclip.training.core import TrainSpec
from unclip.training.run import load_config


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", ["emoji-mini", "emoji-base", "tiny"])
def test_config_builds_every_stage(name: str) -> None:
    cfg = load_config(name)
    c, vocab, length = cfg["clip"], cfg["tokenizer"]["vocab_size"] + 300, cfg["tokenizer"]["max_length"]
    text = builders.text_encoder(c, vocab, length, 1, 1, 0)
    parts = [text, builders.image_encoder(c), builders.prior(cfg["prior"], c["projection_dim"], length),
             builders.movq(cfg["movq"])]  # fmt: skip
    latent = cfg["data"]["image_size"] // 2 ** (len(cfg["movq"]["block_out_channels"]) - 1)
    for inpaint in (False, True):
        parts.append(builders.decoder_unet(cfg["decoder"], c["projection_dim"], 4, latent, inpaint=inpaint))
    parts += [builders.upsampler(cfg["upsampler_256"]), builders.upsampler(cfg["upsampler_1024"])]
    total = sum(_params(p) for p in parts)
    for key in ("clip", "prior", "movq", "decoder", "inpaint", "upsampler_256", "upsampler_1024"):
        spec = TrainSpec.from_config(cfg[key]["train"])
        assert spec.batch_size > 0 and spec.max_minutes <= 100
    if name == "emoji-base":
        assert total * 2 < 64 * 2**20  # fp16 bytes within the 64 MB budget
    assert text.config.hidden_size == c["projection_dim"]  # the prior reads hidden states at its width


def test_unknown_config() -> None:
    with pytest.raises(FileNotFoundError):
        load_config("no-such-config")


@pytest.mark.parametrize(("stage", "config"), [("prior", "emoji-decoder-cpu"), ("all", "emoji-words")])
def test_a_stage_the_config_has_no_section_for_is_refused_before_anything_trains(
    stage: str, config: str, emoji64: Path, tmp_path: Path
) -> None:
    """`train prior --config emoji-decoder-cpu` said "error: 'prior'"; `train all --config emoji-words` trained
    the text side, then failed at the autoencoder."""
    result = CliRunner().invoke(app, ["train", stage, "--config", config, "--data", str(emoji64), "--run-dir",
                                      str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "has no" in result.output and "section" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("stage", "first"), [("clip", "tokenizer"), ("prior", "clip"), ("decoder", "movq")])
def test_a_stage_whose_inputs_the_run_lacks_names_the_stage_to_train_first(
    stage: str, first: str, emoji64: Path, tmp_path: Path
) -> None:
    """A fresh run's decoder (no --init-from) answered with Hugging Face hub errors about repo ids."""
    result = CliRunner().invoke(app, ["train", stage, "--config", "tiny", "--data", str(emoji64), "--run-dir",
                                      str(tmp_path / "run")])  # fmt: skip
    said = str(result.exception)  # `unclip` prints it as one line (error: …)
    assert isinstance(result.exception, FileNotFoundError) and f"train `{first}`" in said and "--init-from" in said


def test_the_upsamplers_say_an_import_of_images_has_no_drawings_to_learn_from(tmp_path: Path) -> None:
    from PIL import Image

    from unclip.data.importer import ImportConfig, import_data

    src = tmp_path / "mine"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (80 * i, 0, 0)).save(src / f"{i}.png")
        (src / f"{i}.txt").write_text(f"a square number {i}")
    import_data(ImportConfig(src=src, out=tmp_path / "data", sizes=(64,)))
    result = CliRunner().invoke(app, ["train", "upsampler-256", "--config", "tiny", "--data", str(tmp_path / "data"),
                                      "--run-dir", str(tmp_path / "run")])  # fmt: skip
    said = str(result.exception)
    assert isinstance(result.exception, FileNotFoundError) and "svg/" in said and "import" in said, said
