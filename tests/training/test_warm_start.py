"""Starting stages from a trained model: the autoencoder with its encoder frozen (and its colour term), the
decoders, CLIP's text tower against its frozen image tower (locked-image tuning) and the prior; training on
every non-holdout split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import VQModel

from unclip.models import builders
from unclip.training.run import Run, load_config


def _cfg(tiny_model: Path, **movq) -> dict:
    cfg = load_config("tiny")
    cfg["movq"].update(movq)
    cfg["movq"]["train"]["max_steps"] = 3
    return cfg


def test_a_frozen_encoder_keeps_the_latent_space(tiny_model: Path, emoji64: Path, tmp_path: Path) -> None:
    start = tiny_model / "decoder" / "movq"
    cfg = _cfg(
        tiny_model, init_from=str(tiny_model), freeze_encoder=True, train_quantized=False, colour_weight=2.0
    )
    run = Run(cfg, emoji64, tmp_path, "cpu")
    run.train("movq", show_progress=False)
    before = VQModel.from_pretrained(start, torch_dtype=torch.float32)
    after = VQModel.from_pretrained(run.model_dir / "decoder" / "movq", torch_dtype=torch.float32)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(before.encode(x).latents, after.encode(x).latents, atol=1e-5)  # same latents
        h = before.encode(x).latents
        moved = (
            before.decode(h, force_not_quantize=True).sample - after.decode(h, force_not_quantize=True).sample
        )
    assert moved.abs().max() > 1e-4  # the pixel decoder learned


def test_training_splits_are_configurable_and_never_holdout(emoji64: Path, tmp_path: Path) -> None:
    cfg = load_config("tiny")
    train_only = len(Run(cfg, emoji64, tmp_path / "a", "cpu").images())
    cfg["data"]["train_splits"] = ["train", "val", "test"]
    assert len(Run(cfg, emoji64, tmp_path / "b", "cpu").images()) > train_only
    cfg["data"]["train_splits"] = ["train", "holdout"]
    with pytest.raises(ValueError, match="holdout"):
        Run(cfg, emoji64, tmp_path / "c", "cpu").images()


def test_the_decoder_only_config_starts_from_the_bundled_autoencoder() -> None:
    from unclip import REPO_ROOT

    cfg = load_config("emoji-movq-decoder")
    assert (
        cfg["movq"]["freeze_encoder"] and (REPO_ROOT / cfg["movq"]["init_from"] / "decoder" / "movq").is_dir()
    )
    assert "holdout" not in cfg["data"]["train_splits"]


@pytest.mark.parametrize("stage", ["decoder", "inpaint"])
def test_the_cpu_decoder_config_continues_the_bundled_unets(stage: str) -> None:
    """Its architecture is the bundled decoders' own: their weights load into what it builds, key for key."""
    from diffusers import UNet2DConditionModel

    from unclip import REPO_ROOT

    cfg = load_config("emoji-decoder-cpu")
    assert "holdout" not in cfg["data"]["train_splits"]
    shipped = UNet2DConditionModel.from_pretrained(
        REPO_ROOT / cfg[stage]["init_from"] / stage / "unet", torch_dtype=torch.float32
    )
    c = shipped.config
    built = builders.decoder_unet(
        cfg["decoder"], c.encoder_hid_dim, 4, c.sample_size, inpaint=stage == "inpaint"
    )
    built.load_state_dict(shipped.state_dict())  # strict: raises on any missing, extra or reshaped weight


@pytest.mark.parametrize("stage", ["decoder", "inpaint"])
def test_decoders_can_start_from_a_trained_model(
    tiny_model: Path, emoji64: Path, tmp_path: Path, stage: str
) -> None:
    import shutil

    from diffusers import UNet2DConditionModel

    cfg = load_config("tiny")
    cfg[stage]["init_from"] = str(tiny_model)
    run = Run(cfg, emoji64, tmp_path, "cpu")
    shutil.copytree(tiny_model, run.model_dir, symlinks=True)  # the clip and movq the stage reads
    unet = run.stage(stage).model()
    trained = UNet2DConditionModel.from_pretrained(tiny_model / stage / "unet", torch_dtype=torch.float32)
    for k, v in trained.state_dict().items():
        assert torch.equal(unet.state_dict()[k], v), k


def test_locked_image_tuning_moves_only_the_text_tower(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    cfg = load_config("tiny")
    cfg["clip"].update(init_from=str(tiny_model), freeze_vision=True, group=2)
    cfg["prior"]["init_from"] = str(tiny_model)
    run = Run(cfg, emoji64, tmp_path, "cpu")
    run.seed_model(tiny_model)  # the tokenizer comes with it
    run.train("clip", show_progress=False)
    towers = sorted((run.model_dir / "prior").glob("*_encoder/*.safetensors"))
    written = [p.stat().st_mtime_ns for p in towers]
    run.train("prior", show_progress=False)
    assert [p.stat().st_mtime_ns for p in towers] == written  # the prior's export leaves the towers it read

    def weights(folder: Path) -> dict:
        return {k: v.float() for f in folder.glob("*.safetensors") for k, v in load_file(f).items()}

    for tower, moved in (("image_encoder", False), ("text_encoder", True)):
        before, after = weights(tiny_model / "prior" / tower), weights(run.model_dir / "prior" / tower)
        drift = max(float((after[k] - v).abs().max()) for k, v in before.items())
        assert (drift > 1e-4) == moved, (tower, drift)
    before, after = weights(tiny_model / "prior" / "prior"), weights(run.model_dir / "prior" / "prior")
    drift = max(
        float((after[k] - v).abs().max()) for k, v in before.items() if k not in ("clip_mean", "clip_std")
    )
    assert 0 < drift < 0.05  # a few steps from the trained prior, not a new one

    # the temperature the text tower was trained at goes with it, and a warm start goes on from it
    import json

    learned = json.loads((run.model_dir / "prior" / "text_encoder" / "config.json").read_text())["logit_scale"]
    assert abs(learned - 2.659) > 1e-6
    cfg["clip"]["init_from"] = str(run.model_dir)
    again = Run(cfg, emoji64, tmp_path / "again", "cpu")
    again.seed_model(run.model_dir)
    warm = again.stage("clip").model()
    assert float(warm.logit_scale.detach()) == pytest.approx(learned, abs=1e-6)


def test_a_resumed_locked_image_run_keeps_the_towers_embeddings(
    tiny_model: Path, emoji64: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run has no `init_from` (it is ignored when a checkpoint resumes): the text tower learnt to
    match a random image tower's embeddings, built from the config, while the right tower was exported."""
    from transformers import CLIPVisionModelWithProjection

    from unclip.training.data import to_unit

    cfg = load_config("tiny")
    cfg["clip"].update(init_from=str(tiny_model), freeze_vision=True)
    cfg["clip"]["train"]["max_steps"] = 2
    first = Run(cfg, emoji64, tmp_path, "cpu")
    first.seed_model(tiny_model)
    first.train("clip", show_progress=False)

    made = []
    stage = Run.stage
    monkeypatch.setattr(Run, "stage", lambda self, name: made.append(stage(self, name)) or made[-1])
    del cfg["clip"]["init_from"]
    cfg["clip"]["train"]["max_steps"] = 4
    Run(cfg, emoji64, tmp_path, "cpu").train("clip", show_progress=False)  # resumes at step 2
    tower = CLIPVisionModelWithProjection.from_pretrained(tiny_model / "prior" / "image_encoder")
    with torch.no_grad():
        truth = tower(pixel_values=to_unit(made[-1].images.images)).image_embeds
    assert torch.allclose(made[-1].frozen, truth, atol=1e-5)

    import shutil

    fresh = Run(cfg, emoji64, tmp_path / "fresh", "cpu")  # no tower to keep: said, not a random one trained to
    shutil.copytree(tiny_model / "prior" / "tokenizer", fresh.model_dir / "prior" / "tokenizer")
    with pytest.raises(ValueError, match="--init-from"):
        fresh.stage("clip").model()


def test_a_decoders_export_leaves_the_autoencoder_a_movq_stage_wrote_meanwhile(
    tiny_model: Path, emoji64: Path, tmp_path: Path
) -> None:
    """Side by side on one GPU the movq stage can finish while the decoders train: their exports wrote back the
    autoencoder they had read at the start (the inpainting one through its movq link), undoing its training."""
    import shutil

    from safetensors.torch import load_file

    run = Run(load_config("tiny"), emoji64, tmp_path, "cpu")
    shutil.copytree(tiny_model, run.model_dir, symlinks=True)
    stages = {name: run.stage(name) for name in ("decoder", "inpaint")}  # both read the autoencoder now
    movq = run.model_dir / "decoder" / "movq"
    newer = VQModel.from_pretrained(movq, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in newer.parameters():
            p.add_(0.5)
    newer.save_pretrained(movq)  # what a movq stage beside them exports
    for name, stage in stages.items():
        stage.export(stage.model())
        assert (run.model_dir / name / "unet").is_dir()
    assert (run.model_dir / "inpaint" / "movq").is_symlink()
    written = {k: v for f in movq.glob("*.safetensors") for k, v in load_file(f).items()}
    assert all(torch.equal(written[k], v.to(written[k].dtype)) for k, v in newer.state_dict().items())
