"""The shipped training configs build every component, and the base config fits the bundled-model budget."""

from __future__ import annotations

import pytest

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
