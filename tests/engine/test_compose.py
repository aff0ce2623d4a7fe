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
