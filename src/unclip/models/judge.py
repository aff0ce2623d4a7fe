"""The judge: an image classifier of emoji renders (which emoji, which group, which style), independent of
the unCLIP model it measures. Its backbone is transformers' ResNet; it reads 64 px RGB images on white."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

INPUT_SIZE = 64  # what the judge reads; other sizes are resized (area) first
WEIGHTS = "judge.safetensors"
CONFIG = "judge.json"


@dataclass
class JudgeOutput:
    concept: torch.Tensor  # logits [N, emoji]: skin tones counted as their base emoji
    group: torch.Tensor  # logits [N, groups]
    style: torch.Tensor  # logits [N, styles]
    features: torch.Tensor  # [N, D]: the pooled backbone features (for Fréchet distances)

    def take(self, idx: list[int]) -> JudgeOutput:
        """The outputs of these images only."""
        t = torch.tensor(idx, dtype=torch.long)
        return JudgeOutput(self.concept[t], self.group[t], self.style[t], self.features[t])


class Judge(torch.nn.Module):
    """ResNet backbone and three linear heads. `classes` names every output: {"concept": [base hexcodes],
    "labels": [English labels], "group": [...], "style": [...]}. The input is upsampled 2× before the
    ResNet stem (a 4× reduction), so the first stage works at 32 px."""

    def __init__(self, arch: dict[str, Any], classes: dict[str, list[str]]) -> None:
        from transformers import ResNetConfig, ResNetModel

        super().__init__()
        self.arch, self.classes = dict(arch), classes
        self.info: dict[str, Any] = {}  # what training wrote beside the weights (probe_percent, figures)
        self.backbone = ResNetModel(
            ResNetConfig(
                embedding_size=arch["embedding_size"],
                hidden_sizes=list(arch["hidden_sizes"]),
                depths=list(arch["depths"]),
                layer_type="basic",
                downsample_in_first_stage=False,
            )
        )
        width = arch["hidden_sizes"][-1]
        self.dropout = torch.nn.Dropout(arch.get("dropout", 0.2))
        self.concept = torch.nn.Linear(width, len(classes["concept"]))
        self.group = torch.nn.Linear(width, len(classes["group"]))
        self.style = torch.nn.Linear(width, len(classes["style"]))

    def forward(self, x: torch.Tensor) -> JudgeOutput:
        """x: float N×3×H×W in [-1, 1]."""
        if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        feats = self.backbone(pixel_values=x).pooler_output.flatten(1)
        h = self.dropout(feats)
        return JudgeOutput(self.concept(h), self.group(h), self.style(h), feats)

    def save(self, folder: Path, metadata: dict | None = None) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, folder / WEIGHTS, metadata={"format": "pt"})
        (folder / CONFIG).write_text(
            json.dumps({"arch": self.arch, "classes": self.classes, **(metadata or {})}, ensure_ascii=False)
        )

    @classmethod
    def load(cls, folder: Path, device: str | torch.device = "cpu") -> Judge:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG).exists():
            raise FileNotFoundError(f"no judge in {folder} (expected {CONFIG} and {WEIGHTS})")
        cfg = json.loads((folder / CONFIG).read_text())
        judge = cls(cfg.pop("arch"), cfg.pop("classes"))
        judge.info = cfg
        state = {k: v.float() for k, v in load_file(folder / WEIGHTS).items()}
        judge.load_state_dict(state)
        return judge.to(device).eval().requires_grad_(False)


def is_probe_pair(base_hexcode: str, style: str, percent: int) -> bool:
    """Whether an (emoji, style) pair is one the judge leaves out of its training to measure itself on (about
    `percent` per cent of pairs, the same on every machine)."""
    digest = hashlib.md5(f"judge-probe:{base_hexcode}:{style}".encode()).hexdigest()
    return int(digest, 16) % 100 < percent
