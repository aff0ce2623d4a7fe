"""A repaint is shifted to meet the kept pixels at the edge of the area it fills."""

from __future__ import annotations

import torch

from unclip.engine.compose import fill, match_edges


def _hole(size: int = 64) -> torch.Tensor:
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return m


def test_fill_keeps_known_values_and_spreads_a_constant_exactly() -> None:
    w = 1 - _hole()
    v = torch.rand(1, 3, 64, 64)
    out = fill(v * w, w)
    assert torch.allclose(out * w, v * w)
    assert torch.allclose(fill(torch.full((1, 3, 64, 64), 0.3) * w, w), torch.full((1, 3, 64, 64), 0.3), atol=1e-6)


def test_a_colour_cast_is_taken_out_at_the_edge_and_fades_inside() -> None:
    size = 256
    hole = _hole(size)
    orig = torch.rand(1, 3, 1, 1).expand(1, 3, size, size) * 0.5
    out = (orig + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)).repeat(2, 1, 1, 1)  # the decoder's cast
    fixed = match_edges(out, orig, hole)
    assert torch.equal(fixed * (1 - hole), out * (1 - hole))  # outside the hole: untouched
    edge = (fixed - orig)[..., size // 4, size // 2].abs().max()
    centre = (fixed - orig)[..., size // 2, size // 2].abs()
    assert edge < 0.03 < 0.1 < centre.max()  # met at the edge; far inside, the repaint's own colours
    before = (out - orig)[..., size // 4, size // 2].abs().max()
    assert before > 0.25


def test_nothing_to_match_without_kept_pixels_or_without_a_hole() -> None:
    out, orig = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    assert torch.equal(match_edges(out, orig, torch.ones(1, 1, 64, 64)), out)
    assert torch.equal(match_edges(out, orig, torch.zeros(1, 1, 64, 64)), out)


def test_above_256_px_the_correction_is_worked_out_small_and_matches_the_full_size_one(monkeypatch) -> None:
    size = 1024
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    orig = torch.stack([yy, xx, (yy + xx) / 2])[None] * 0.6 + 0.2  # smooth gradients, not one colour
    hole = ((yy - 0.45) ** 2 + (xx - 0.55) ** 2 < 0.07).float()[None, None]  # a round hole, edge off the grid
    out = (orig + 0.15 * torch.sin(8 * yy)[None, None] - 0.1).repeat(2, 1, 1, 1)  # a cast that varies
    fast = match_edges(out, orig, hole)
    assert torch.equal(fast * (1 - hole), out * (1 - hole))
    monkeypatch.setattr("unclip.engine.compose.WORK", 4096)
    slow = match_edges(out, orig, hole)
    assert (fast - slow).abs().mean() < 0.01 and (fast - slow).abs().max() < 0.05
    ring = torch.nn.functional.max_pool2d(1 - hole, 9, stride=1, padding=4) * hole  # the hole's outer 4 px
    err = lambda x: ((x - orig).abs() * ring).sum() / (3 * 2 * ring.sum())  # noqa: E731
    assert err(fast) < 0.02 < 0.1 < err(out)


def test_kept_pixels_thinner_than_a_pixel_at_256_are_still_met() -> None:
    size = 1024
    hole = torch.ones(1, 1, size, size)
    hole[..., :, ::8] = 0  # one kept column in eight: every 256-px pixel touches the hole
    orig = torch.full((1, 3, size, size), 0.5)
    out = torch.full((1, 3, size, size), 0.8)
    fixed = match_edges(out, orig, hole)
    assert torch.equal(fixed * (1 - hole), out * (1 - hole))
    assert (fixed - orig)[..., :, 1].abs().max() < 0.03  # next to a kept column
