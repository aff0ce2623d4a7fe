"""Every training stage runs a few steps on the fixture data with the `tiny` config and exports folders that
diffusers' Kandinsky 2.2 pipeline classes load and run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unclip.training.run import STAGES, Run, load_config


@pytest.fixture(scope="module")
def trained(emoji64: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    cfg = load_config("tiny")
    cfg["upsampler_256"]["pairs"] = cfg["upsampler_1024"]["pairs"] = 8
    run = Run(cfg, emoji64, tmp_path_factory.mktemp("run"), device="cpu")
    run.workers = 1
    for stage in STAGES:
        run.train(stage, {"max_steps": 2}, show_progress=False)
    return run


def test_stages_write_the_kandinsky_layout(trained: Run) -> None:
    model = trained.model_dir
    for path in (
        "prior/model_index.json",
        "prior/tokenizer/vocab.json",
        "prior/text_encoder/config.json",
        "prior/image_encoder/config.json",
        "prior/prior/config.json",
        "decoder/model_index.json",
        "decoder/unet/config.json",
        "decoder/movq/config.json",
        "inpaint/unet/config.json",
        "upsampler-256/config.json",
        "upsampler-1024/config.json",
    ):
        assert (model / path).exists(), path
    assert (model / "inpaint" / "movq").is_symlink()
    for stage in STAGES[1:]:
        assert (trained.run_dir / stage / "summary.json").exists()


def test_diffusers_pipelines_load_and_run(trained: Run) -> None:
    from diffusers import (
        KandinskyV22InpaintPipeline,
        KandinskyV22Pipeline,
        KandinskyV22PriorPipeline,
        UNet2DModel,
    )

    model = trained.model_dir
    prior = KandinskyV22PriorPipeline.from_pretrained(model / "prior")
    out = prior("a red apple", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == out.negative_image_embeds.shape == (1, 32)
    decoder = KandinskyV22Pipeline.from_pretrained(model / "decoder")
    img = decoder(
        image_embeds=out.image_embeds,
        negative_image_embeds=out.negative_image_embeds,
        height=64,
        width=64,
        num_inference_steps=2,
        output_type="np",
    ).images
    assert img.shape == (1, 64, 64, 3)
    inpaint = KandinskyV22InpaintPipeline.from_pretrained(model / "inpaint")
    mask = torch.zeros(64, 64)
    mask[16:48, 16:48] = 1
    img = inpaint(
        image=torch.zeros(1, 3, 64, 64),
        mask_image=mask,
        image_embeds=out.image_embeds,
        negative_image_embeds=out.negative_image_embeds,
        height=64,
        width=64,
        num_inference_steps=2,
        output_type="np",
    ).images
    assert img.shape == (1, 64, 64, 3)
    assert UNet2DModel.from_pretrained(model / "upsampler-256").config.in_channels == 3 * 4 * 4  # 4×4 blocks


def test_rerun_resumes_instead_of_restarting(trained: Run) -> None:
    metrics = trained.train("movq", {"max_steps": 3}, show_progress=False)
    assert metrics["step"] == 3  # continued from step 2's checkpoint: one more step


def test_the_tokenizer_is_trained_once_and_numbers_its_tokens_the_same_way(trained: Run, tmp_path: Path) -> None:
    """Running again (to resume) retrained the tokenizer under a trained text encoder, and the trainer
    numbered its symbols in hash order: the same captions gave other ids each time."""
    from unclip.models.tokenizer import train_tokenizer

    vocab = trained.model_dir / "prior" / "tokenizer" / "vocab.json"
    before = vocab.read_text()
    assert trained.train("tokenizer")["kept"] == 1.0 and vocab.read_text() == before
    texts = [c for m in trained.images().meta[:200] for caps in m["captions"].values() for c in caps]
    one, two = (train_tokenizer(texts, 300, 32, tmp_path / name) for name in ("one", "two"))
    assert one.get_vocab() == two.get_vocab() and len(one) >= 300
    half = tmp_path / "half" / "model" / "prior" / "tokenizer"  # a kill half-way through writing one: trained again
    half.mkdir(parents=True)
    (half / "vocab.json").write_text(vocab.read_text())
    again = Run(trained.cfg, trained.data_dir, tmp_path / "half", device="cpu")
    assert "kept" not in again.train("tokenizer") and (half / "merges.txt").is_file()
    assert not (half.parent / "tokenizer.part").exists()


def test_unknown_stage_is_an_error(trained: Run) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        trained.stage("vae")
