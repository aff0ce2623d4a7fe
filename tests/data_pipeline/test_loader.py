"""The streaming WebDataset loader: our shards and img2dataset-style shards, at any resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip.data.loader import WebDatasetLoader, dataset_shards, decode_image, expand_shards, load_batches
from unclip.data.shards import ShardWriter

from .conftest import image_bytes


def all_keys(out: Path, split: str) -> set[str]:
    return {
        k for b in WebDatasetLoader(dataset_shards(out, 16, split), size=16, shuffle=0) for k in b["keys"]
    }


@pytest.fixture(scope="module")
def web_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards as img2dataset writes them: jpg/webp/png of any shape, txt, json with its own fields."""
    folder = tmp_path_factory.mktemp("img2dataset")
    rgba = Image.new("RGBA", (30, 30), (0, 0, 255, 0))
    rgba.paste((0, 0, 255, 255), (10, 10, 20, 20))
    palette = Image.new("P", (12, 12), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    images = [
        ("jpg", image_bytes(Image.new("RGB", (40, 20), (255, 0, 0)), "JPEG"), "a red banner"),
        ("webp", image_bytes(rgba, "WEBP"), "a blue square on nothing"),
        ("png", image_bytes(palette, "PNG"), "a red palette square"),
    ]
    with ShardWriter(folder, "0", max_count=2) as w:  # 0-00000.tar, 0-00001.tar
        for i, (ext, data, caption) in enumerate(images):
            w.write(
                f"{i:09d}",
                {
                    ext: data,
                    "txt": caption,
                    "json": {"url": f"u{i}", "caption": caption, "status": "success"},
                },
            )
    return folder


def test_dataset_shards_picks_the_nearest_size(built: tuple[Path, dict]) -> None:
    out, _ = built
    assert {p.parent.name for p in dataset_shards(out, 16, "train")} == {"16"}
    assert {p.parent.name for p in dataset_shards(out, 20, "train")} == {"32"}
    assert {p.parent.name for p in dataset_shards(out, 64, "val")} == {"32"}
    with pytest.raises(FileNotFoundError):
        dataset_shards(out, 16, "nope")


@pytest.mark.parametrize("size", [16, 24])
def test_batches_at_a_chosen_resolution(built: tuple[Path, dict], size: int) -> None:
    out, m = built
    loader = WebDatasetLoader(
        dataset_shards(out, size, "train"), size=size, batch_size=8, shuffle=50, alpha=True
    )
    batches = list(loader)
    n = m["counts"]["train"]["total"]
    assert [len(b["captions"]) for b in batches] == [8] * (n // 8) + ([n % 8] if n % 8 else [])
    b = batches[0]
    assert b["images"].shape == (8, 3, size, size) and b["images"].dtype == torch.float32
    assert b["images"].min() >= -1 and b["images"].max() <= 1
    assert b["alpha"].shape == (8, 1, size, size) and 0 <= b["alpha"].min() <= b["alpha"].max() <= 1
    assert all(isinstance(c, str) and c for c in b["captions"])
    assert all(meta["key"] == key for meta, key in zip(b["meta"], b["keys"], strict=True))
    assert len({k for bb in batches for k in bb["keys"]}) == n


def test_captions_follow_locales_and_txt(built: tuple[Path, dict]) -> None:
    out, _ = built
    shards = dataset_shards(out, 16, "train")
    for batch in WebDatasetLoader(shards, size=16, shuffle=0, locales=["ja"]):
        for caption, meta in zip(batch["captions"], batch["meta"], strict=True):
            assert caption in meta["captions"].get("ja", []) or (
                "ja" not in meta["captions"] and caption in meta["captions"]["en"]
            )
    batch = next(iter(WebDatasetLoader(shards, size=16, shuffle=0, captions="txt")))
    assert batch["captions"] == [m["captions"]["en"][-1] for m in batch["meta"]]


def test_seeded_shuffle_and_augmentation(built: tuple[Path, dict]) -> None:
    out, _ = built
    shards = dataset_shards(out, 16, "train")

    def run(seed: int, augment: bool) -> tuple[list[str], torch.Tensor]:
        batch = next(
            iter(WebDatasetLoader(shards, size=16, batch_size=64, shuffle=100, seed=seed, augment=augment))
        )
        return batch["keys"], batch["images"]

    keys0, plain0 = run(0, False)
    keys0b, plain0b = run(0, False)
    keys1, _ = run(1, False)
    assert keys0 == keys0b and torch.equal(plain0, plain0b) and keys0 != keys1
    _, aug0 = run(0, True)
    _, aug0b = run(0, True)
    assert torch.equal(aug0, aug0b) and not torch.allclose(aug0, plain0)
    assert aug0.min() >= -1 and aug0.max() <= 1 and aug0[:, :, -1, -1].mean() > 0.9  # corners stay white


def test_epochs_and_drop_last(built: tuple[Path, dict]) -> None:
    out, m = built
    shards = dataset_shards(out, 16, "train")
    n = m["counts"]["train"]["total"]
    loader = WebDatasetLoader(shards, size=16, batch_size=5, shuffle=10, epochs=2, drop_last=True)
    assert sum(len(b["keys"]) for b in loader) == 2 * (n // 5) * 5
    forever = iter(WebDatasetLoader(shards, size=16, batch_size=n, epochs=None))
    assert [len(next(forever)["keys"]) for _ in range(3)] == [n, n, n]


def test_workers_read_disjoint_parts(built: tuple[Path, dict]) -> None:
    out, m = built
    shards = dataset_shards(out, 16, "train")
    ds = WebDatasetLoader(shards, size=16, batch_size=4, shuffle=0)
    # one shard, two workers: sample-level sharding
    parts = [{s[3]["key"] for s in ds.samples(0, worker=w, workers=2)} for w in range(2)]
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == m["counts"]["train"]["total"]
    many = [Path(f"s{i}.tar") for i in range(5)]
    ds.paths = many
    split = [ds.partition(0, w, 2)[0] for w in range(2)]
    assert sorted(split[0] + split[1]) == sorted(many) and not set(split[0]) & set(split[1])
    # and through a real DataLoader with worker processes
    keys = [k for b in load_batches(out, 16, "train", batch_size=4, workers=2, shuffle=0) for k in b["keys"]]
    assert len(keys) == len(set(keys)) == m["counts"]["train"]["total"]


def test_img2dataset_style_shards(web_shards: Path) -> None:
    assert len(expand_shards(web_shards)) == 2
    assert expand_shards(str(web_shards / "0-{00000..00001}.tar")) == expand_shards(
        str(web_shards / "0-*.tar")
    )
    batches = list(WebDatasetLoader(web_shards, size=16, batch_size=8, shuffle=0, alpha=True))
    assert len(batches) == 1
    b = batches[0]
    assert b["captions"] == ["a red banner", "a blue square on nothing", "a red palette square"]
    assert b["meta"][0]["url"] == "u0" and b["keys"] == ["000000000", "000000001", "000000002"]
    img = (b["images"] + 1) / 2
    banner, square = img[0], img[1]
    assert torch.allclose(banner[:, 0, :], torch.ones(3, 16), atol=0.02)  # padded with white above...
    assert banner[0, 8, 8] > 0.9 and banner[1, 8, 8] < 0.1  # ...red in the middle
    assert b["alpha"][0, 0, 0, 0] == 0 and b["alpha"][0, 0, 8, 8] == 1
    assert square[:, 0, 0].min() > 0.99 and square[2, 8, 8] > 0.9 and square[0, 8, 8] < 0.1  # blue on white
    assert b["images"][2].mean() < 0.9  # the palette image's red shows


@pytest.mark.parametrize(("fit", "top_white"), [("pad", True), ("crop", False), ("stretch", False)])
def test_fit_modes(fit: str, top_white: bool) -> None:
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    rgb, alpha = decode_image(image_bytes(im, "PNG"), 10, fit)
    assert rgb.shape == (10, 10, 3) and alpha.shape == (10, 10)
    assert bool(tuple(rgb[0, 5]) == (255, 255, 255)) is top_white
    assert bool(alpha[0, 5] == 0) is top_white


def test_a_corrupt_sample_is_skipped(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "x") as w:
        w.write("good", {"png": image_bytes(Image.new("RGB", (8, 8)), "PNG"), "txt": "fine"})
        w.write("bad", {"png": b"not a png", "txt": "broken"})
        w.write("none", {"txt": "no image at all", "json": json.dumps({"a": 1})})
    batches = list(WebDatasetLoader(tmp_path, size=8, shuffle=0))
    assert [k for b in batches for k in b["keys"]] == ["good"]
    with pytest.raises(Exception, match="cannot identify"):
        list(WebDatasetLoader(tmp_path, size=8, shuffle=0, skip_errors=False))
    assert np.asarray(batches[0]["images"]).shape == (1, 3, 8, 8)
