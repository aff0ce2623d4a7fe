"""Fixtures for the CLI tests: the tiny model (tests/conftest.py), a rules-only content policy, input images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def rules_only_policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped policy with its semantic classifier off: rule hits still refuse, and no encoder load.
    Tests marked slow keep the full policy."""
    if request.node.get_closest_marker("slow"):
        return
    from unclip.cli import common
    from unclip.safety.policy import ContentPolicy

    base = ContentPolicy.load()
    policy = ContentPolicy(
        {**base.config, "classifier": {**base.config.get("classifier", {}), "enabled": False}}
    )
    monkeypatch.setattr(common, "_policy", lambda: policy)


def pattern(size: tuple[int, int], seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth colourful image (blocks of colour), so resampling and watermarking stay gentle."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, size=(max(1, h // 32), max(1, w // 32), 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize((w, h), Image.Resampling.NEAREST)
    return img.convert(mode)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    out: dict[str, Path] = {}

    def save(name: str, img: Image.Image) -> None:
        out[name] = root / name
        img.save(out[name])

    save("square.png", pattern((256, 256)))
    save("wide.png", pattern((256, 128), seed=1))
    save("small.png", pattern((64, 64), seed=2))
    save("big.png", pattern((320, 320), seed=3))
    holed = pattern((256, 256), seed=4, mode="RGBA")
    holed.paste((0, 0, 0, 0), (96, 96, 160, 160))
    save("holed.png", holed)
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 128))
    save("mask.png", mask)
    grey = Image.new("L", (256, 256), 255)
    grey.paste(0, (0, 0, 128, 128))
    save("grey-mask.png", grey)
    save("mask-128.png", mask.resize((128, 128)))
    save("opaque-mask.png", Image.new("RGBA", (256, 256), (0, 0, 0, 255)))
    (root / "text.png").write_text("this is not an image")
    out["text.png"] = root / "text.png"
    data = out["square.png"].read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    out["truncated.png"] = root / "truncated.png"
    (root / "empty.png").write_bytes(b"")
    out["empty.png"] = root / "empty.png"
    save("bomb.png", Image.new("1", (8192, 8000)))  # 65 M pixels in a few kB
    save("photo.jpg", pattern((256, 256), seed=5))
    return out
