"""The evaluation metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unclip.evaluation.metrics import edge_sharpness, frechet_distance, psnr, ssim, topk


def _edges() -> torch.Tensor:
    x = -torch.ones(2, 3, 64, 64)
    x[:, :, 16:48, 16:48] = 1.0
    return x


def test_psnr_and_ssim() -> None:
    x = _edges()
    assert psnr(x, x) > 90 and abs(ssim(x, x) - 1) < 1e-6
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    assert 15 < psnr(noisy, x) < 30 and ssim(noisy, x) < ssim(x, x)


def test_edge_sharpness_penalises_blur_not_ringing() -> None:
    x = _edges()
    blurred = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    assert abs(edge_sharpness(x, x) - 1) < 1e-6
    assert edge_sharpness(blurred, x) < 0.6
    ringing = x + 0.05 * torch.sign(torch.sin(torch.arange(64.0)))  # texture away from the edges
    assert edge_sharpness(ringing, x) > 0.9


def test_topk_with_several_right_answers() -> None:
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])
    correct = torch.tensor([[False, True, False], [False, False, True]])
    assert topk(sim, correct, ks=(1, 3)) == {"top1": 0.5, "top3": 1.0}


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) < 1e-6
    assert frechet_distance(a, a + 3) > 30


def test_frechet_distance_uses_no_deprecated_argument() -> None:
    """SciPy 1.17 warns that `sqrtm(disp=...)` goes in 1.18, which the project allows: every Fréchet figure
    would fail there."""
    import warnings

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_distance(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 1) > 1


def test_a_distance_that_could_not_be_computed_is_not_a_perfect_zero() -> None:
    from unclip.evaluation.judge import Basis, frechet

    a = torch.randn(40, 8)
    basis = Basis.fit(a, 4)
    assert frechet(a, a, basis) < 1e-6
    assert np.isnan(frechet(torch.full_like(a, float("nan")), a, basis))


def test_the_evaluation_reads_images_as_the_engine_does(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """An image of another size than the CLIP tower's was resized by area (blocks, when enlarging 64 px renders
    for a public model's 224 px tower), while the engine resizes bicubically."""
    from unclip.engine import Engine
    from unclip.evaluation.stages import image_embeds

    engine = Engine.load(tiny_model)
    size = engine.c.image_size
    x = torch.randint(0, 256, (2, 3, size // 2, size // 2), dtype=torch.uint8)
    with torch.inference_mode():
        want = engine._pixel_embeds(x.float() / 127.5 - 1)
    assert torch.allclose(image_embeds(engine, x, normalize=False), want.float(), atol=1e-5)


def test_the_frechet_reference_sample_is_drawn_as_the_prompts_are() -> None:
    """The sample a group's rows are compared with was drawn from every image of its kinds: half skin-tone
    variants, some of them of the very pairs asked for, and a group of seen and holdout prompts almost all
    seen (the seen pool is fifty times larger)."""
    from types import SimpleNamespace

    from unclip.evaluation.cascade import _references
    from unclip.evaluation.prompts import EvalPrompt

    def split(kind: str, n: int) -> SimpleNamespace:
        meta = []
        for i in range(n):
            base = f"{kind}{i // 2}"
            hexcode = base if i % 2 == 0 else f"{base}-1F3FB"  # every other image a skin-tone variant
            meta.append({"key": f"{kind}-{i}", "hexcode": hexcode, "base_hexcode": base, "style": "noto"})
        images = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3) + (1000 if kind == "holdout" else 0)
        return SimpleNamespace(meta=meta, images=images)

    splits = {"seen": split("seen", 400), "holdout": split("holdout", 40)}
    prompts = [
        EvalPrompt("p", "de", "{x}", kind, f"{kind}{i}", "noto", f"{kind}-{2 * i}")
        for kind, count in (("seen", 3), ("holdout", 5))
        for i in range(count)
    ]
    scorer = SimpleNamespace(predict=lambda x: SimpleNamespace(features=x))
    refs = _references(scorer, splits, prompts, {"mixed": list(range(8))}, seed=0)  # type: ignore[arg-type]
    picked = [int(v) for v in refs["mixed"][:, 0]]
    kinds = ["holdout" if v >= 1000 else "seen" for v in picked]
    assert sorted(kinds) == ["holdout"] * 5 + ["seen"] * 3  # the group's own proportion
    metas = [splits[k].meta[v % 1000] for k, v in zip(kinds, picked, strict=True)]
    assert all(m["hexcode"] == m["base_hexcode"] for m in metas)  # no skin-tone variants
    asked = {(p.base_hexcode, p.style) for p in prompts}
    assert not any((m["base_hexcode"], m["style"]) in asked for m in metas)  # nor an asked pair
