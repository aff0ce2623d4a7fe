"""Run training stages from a config file: tokenizer → clip → prior, movq → decoder → inpaint, upsamplers.

Stages write into one model folder (run_dir/model) in the Kandinsky 2.2 layout; each keeps its checkpoint,
metrics and EMA state in run_dir/<stage>, and resumes from there when run again.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch

from unclip import REPO_ROOT
from unclip.training.core import TrainSpec, train

STAGES = ("tokenizer", "clip", "prior", "movq", "decoder", "inpaint", "upsampler-256", "upsampler-1024")
EXTRA_STAGES = ("judge",)  # trained by name only: the judge measures the model, it is no part of it


def load_config(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.is_file():  # a folder named like a config (`tiny`) is not one
        path = REPO_ROOT / "configs" / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no config {name_or_path!r} (looked for a file and for configs/{name_or_path}.json)"
        )
    return json.loads(path.read_text())


class Run:
    def __init__(
        self, config: dict[str, Any], data_dir: Path, run_dir: Path, device: str | None = None
    ) -> None:
        self.cfg, self.data_dir, self.run_dir = config, data_dir, run_dir
        self.model_dir = run_dir / "model"
        self.judge_dir = run_dir / "judge-model"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # data loading processes (UNCLIP_WORKERS is the server's engine threads)
        self.workers = int(os.environ.get("UNCLIP_DATA_WORKERS", os.cpu_count() or 1))

    @cache  # noqa: B019 - one Run per process
    def images(self):
        """The training images: the config's `data.train_splits` (default: the train split alone)."""
        from unclip.training.data import load_splits

        splits = self.cfg["data"].get("train_splits", ["train"])
        if "holdout" in splits:
            raise ValueError(
                "the holdout pairs never enter training: remove 'holdout' from data.train_splits"
            )
        return load_splits(self.data_dir, self.cfg["data"]["image_size"], splits).to(self.device)

    def seed_model(self, source: Path) -> None:
        """Start this run's model folder as a copy of a trained model's (the parts a stage reads and does not
        train, such as the tokenizer or the CLIP towers, come from there), unless it exists."""
        if not self.model_dir.exists():
            import shutil

            from unclip.models.builders import model_part

            shutil.copytree(model_part(source), self.model_dir, symlinks=True)

    def locales(self) -> list[str] | None:
        loc = self.cfg["data"].get("locales", "all")
        return None if loc == "all" else list(loc)

    def _part(self, rel: str, made_by: str) -> Path:
        """A part of the run's model folder an earlier stage writes, or a clear error naming that stage."""
        path = self.model_dir / rel
        if not (path / "config.json").is_file() and not (path / "tokenizer_config.json").is_file():
            raise FileNotFoundError(
                f"{path} is missing: train `{made_by}` into this run first, or start from a trained model with "
                "--init-from (e.g. models/unclip-emoji)"
            )
        return path

    def tokenizer(self):
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(self._part("prior/tokenizer", "tokenizer"))

    @cache  # noqa: B019
    def captions(self):
        from unclip.training.data import load_captions

        data = self.cfg["data"]
        return load_captions(
            self.images(), self.tokenizer(), self.locales(), data.get("english_share"), data.get("locale_weights")
        ).to(self.device)

    def _tower(self, name: str):
        """The trained CLIP text_encoder or image_encoder, in fp32 (shipped weights are fp16)."""
        from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

        cls = CLIPTextModelWithProjection if name == "text_encoder" else CLIPVisionModelWithProjection
        path = self._part(f"prior/{name}", "clip")
        return cls.from_pretrained(path, torch_dtype=torch.float32).to(self.device)

    def train_tokenizer(self) -> dict[str, float]:
        """Train the tokenizer, once: a run's model folder that has one (from an earlier pass of this run, or
        copied by --init-from) keeps it, since its text encoder was trained on those ids."""
        from transformers import CLIPTokenizer

        from unclip.models.tokenizer import train_tokenizer

        folder = self.model_dir / "prior" / "tokenizer"
        if all((folder / f).is_file() for f in ("vocab.json", "merges.txt", "tokenizer_config.json")):
            return {"vocab_size": len(CLIPTokenizer.from_pretrained(folder)), "kept": 1.0}

        locales = self.locales()
        texts = [
            c
            for m in self.images().meta
            for loc, caps in m["captions"].items()
            if not locales or loc in locales
            for c in caps
        ]
        t = self.cfg["tokenizer"]
        tok = train_tokenizer(texts, t["vocab_size"], t["max_length"], folder)
        return {"vocab_size": len(tok), "captions": len(texts)}

    def stage(self, name: str):
        out = self.model_dir
        if name == "clip":
            from unclip.training.clip import ClipStage

            return ClipStage(self.cfg, self.images(), self.captions(), self.tokenizer(), out)
        if name == "prior":
            from unclip.training.prior import PriorStage

            text, vision = self._tower("text_encoder"), self._tower("image_encoder")
            return PriorStage(self.cfg, self.images(), self.captions(), self.tokenizer(), text, vision, out)
        if name == "movq":
            from unclip.training.movq import MovqStage

            return MovqStage(self.cfg, self.images(), out)
        if name in ("decoder", "inpaint"):
            from diffusers import VQModel

            from unclip.training.decoder import DecoderStage

            movq = VQModel.from_pretrained(self._part("decoder/movq", "movq"), torch_dtype=torch.float32).to(
                self.device
            )
            return DecoderStage(
                self.cfg, self.images(), movq, self._tower("image_encoder"), out, inpaint=name == "inpaint"
            )
        if name == "judge":
            from unclip.training.judge import JudgeStage

            return JudgeStage(self.cfg, self.data_dir, self.judge_dir, self.device)
        if name.startswith("upsampler"):
            from unclip.training.upsampler import UpsamplerStage

            key = name.replace("-", "_")
            if not (self.data_dir / "svg").is_dir():  # it renders its pairs from the drawings themselves
                raise FileNotFoundError(
                    f"{self.data_dir} has no svg/ folder: the upsamplers learn from drawings rendered at two sizes, "
                    "which `unclip data build emoji` keeps and an import of images does not"
                )
            return UpsamplerStage(
                self.cfg, key, self.data_dir, out, self.device, self.workers, self.cfg["seed"]
            )
        raise ValueError(f"unknown stage {name!r}; choose from {', '.join(STAGES + EXTRA_STAGES)}")

    def train(
        self, name: str, overrides: dict[str, Any] | None = None, show_progress: bool = True
    ) -> dict[str, float]:
        if name == "tokenizer":
            return self.train_tokenizer()
        section = self.cfg["inpaint" if name == "inpaint" else name.replace("-", "_")]["train"]
        mixed_precision = section.get("mixed_precision", self.cfg["mixed_precision"])
        stage = self.stage(name)
        overrides = dict(overrides or {})
        if overrides.get("batch_size") == "auto":
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ValueError("--batch-size auto times one GPU: under accelerate launch, give a number")
            from unclip.training.probe import auto_batch

            base = int(section["batch_size"])
            batch, overrides["lr"] = auto_batch(
                stage, self.device, base, float(section["lr"]), self.run_dir / name, mixed_precision
            )
            # the warm-up spans as many samples as the config's: fewer, larger steps
            overrides["batch_size"] = batch
            overrides["warmup"] = max(1, round(int(section.get("warmup", 100)) * base / batch))
        spec = TrainSpec.from_config(section, overrides)
        metrics = train(
            stage,
            spec,
            self.run_dir / name,
            seed=self.cfg["seed"],
            ema_decay=self.cfg["ema_decay"],
            mixed_precision=mixed_precision,
            save_every_minutes=self.cfg["save_every_minutes"],
            log_every=self.cfg["log_every"],
            show_progress=show_progress,
        )
        (self.run_dir / name / "summary.json").write_text(
            json.dumps(
                {
                    "stage": name,
                    "config": self.cfg["name"],
                    "device": _device_name(self.device),
                    "batch_size": spec.batch_size,
                    "learning_rate": spec.lr,  # the peak; metrics' "lr" is where the schedule ended
                    "warmup_steps": spec.warmup,
                    **metrics,
                },
                indent=2,
            )
        )
        return metrics


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
