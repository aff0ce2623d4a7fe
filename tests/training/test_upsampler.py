"""The learned 4× upsamplers: full-resolution UNets and space-to-depth ones go through one `upsample`."""

from __future__ import annotations

import pytest
import torch

from unclip.models import builders
from unclip.models.upsampling import input_multiple, space_to_depth, upsample


def _cfg(**kw) -> dict:
    return {"scale": 4, "low_size": 64, "block_out_channels": [8, 16], "layers_per_block": 1, **kw}


@pytest.mark.parametrize("f", [1, 2, 4])
def test_upsample_shapes_and_range(f: int) -> None:
    torch.manual_seed(0)
    model = builders.upsampler(_cfg(space_to_depth=f)).eval()
    assert space_to_depth(model) == f and input_multiple(model) == 2 * f
    low = torch.rand(2, 3, 16, 24) * 2 - 1
    with torch.inference_mode():
        for scale in (2, 4):
            out = upsample(model, low, scale)
            assert out.shape == (2, 3, 16 * scale, 24 * scale)
            assert out.min() >= -1 and out.max() <= 1


def test_space_to_depth_sees_the_same_pixels_at_a_sixteenth_of_the_positions() -> None:
    model = builders.upsampler(_cfg(space_to_depth=4))
    assert model.config.in_channels == model.config.out_channels == 48
    assert model.config.sample_size == 64  # 256 px output, folded into 4×4 blocks


def test_a_zero_residual_gives_the_bicubic_enlargement() -> None:
    model = builders.upsampler(_cfg(space_to_depth=4))
    torch.nn.init.zeros_(model.conv_out.weight)
    torch.nn.init.zeros_(model.conv_out.bias)
    low = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.inference_mode():
        out = upsample(model, low, 4)
    bicubic = torch.nn.functional.interpolate(low, scale_factor=4, mode="bicubic").clamp(-1, 1)
    assert torch.equal(out, bicubic)


def test_a_model_that_is_not_an_rgb_upsampler_is_refused() -> None:
    from diffusers import UNet2DModel

    odd = UNet2DModel(sample_size=32, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                      down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                      norm_num_groups=8, layers_per_block=1)  # fmt: skip
    with pytest.raises(ValueError, match="not an RGB upsampler"):
        upsample(odd, torch.zeros(1, 3, 8, 8))
