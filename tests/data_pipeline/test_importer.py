"""`unclip data import`: a folder of images with .txt captions, or WebDataset shards, into our layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from unclip.data.importer import ImportConfig, import_data, safe_key, source_kind
from unclip.data.shards import ShardWriter, iter_samples
from unclip.data.sources import STYLES
from unclip.training.data import load_captions, load_images

from .conftest import image_bytes


class FakeTokenizer:
    """Just enough of a Hugging Face tokenizer for load_captions."""

    model_max_length = 8

    def __call__(self, texts: list[str], **_: object):
        ids = torch.tensor([[len(t) % 50 + 1] * self.model_max_length for t in texts])
        return type("Enc", (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)})()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "my images"
    (src / "cats").mkdir(parents=True)
    rgba = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    rgba.paste((0, 160, 0, 255), (6, 6, 18, 18))
    rgba.save(src / "green.png")
    (src / "green.png").with_suffix(".txt").write_text("a green square\n\nanother way to say it\n")
    Image.new("RGB", (48, 24), (200, 0, 0)).save(src / "cats" / "tabby.cat.jpg")
    (src / "cats" / "tabby.cat.txt").write_text("a red banner, said to be a cat")
    Image.new("RGB", (20, 20), (0, 0, 200)).save(src / "cats" / "Blue Cat.webp")
    (src / "cats" / "Blue Cat.txt").write_text("ein blauer Kater")
    Image.new("RGB", (20, 20)).save(src / "no caption.png")
    (src / "broken.png").write_bytes(b"not an image")
    (src / "broken.txt").write_text("a caption for nothing")
    (src / "._green.png").write_bytes(b"macOS debris")
    return src


def test_import_a_folder_with_txt_captions(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    m = import_data(ImportConfig(src=folder, out=out, sizes=(16, 32), val_percent=0, test_percent=0))
    assert m["source_format"] == "folder" and m["counts"]["train"]["total"] == 3
    assert m["skipped"] == {"no_caption": 1, "unreadable": 1}
    assert m["images_per_size"] == {"16": 3, "32": 3} and m["locales"] == ["en"]
    assert m["sources"] == {}  # nothing says whose images they are
    metas = {
        json.loads(s["json"])["key"]: json.loads(s["json"])
        for s in iter_samples(sorted((out / "shards" / "16").glob("train-*.tar")))
    }
    assert set(metas) == {"green", "cats_tabby_cat", "cats_Blue_Cat"}
    green = metas["green"]
    assert green["captions"] == {"en": ["a green square", "another way to say it"]}
    assert green["style"] == "user" and green["base_hexcode"] == "green" and green["split"] == "train"
    assert green["source_path"] == "green.png"

    images = load_images(out, 16, "train")
    assert images.images.shape == (3, 3, 16, 16) and images.alpha.shape == (3, 1, 16, 16)
    assert images.style_ids.tolist() == [len(STYLES)] * 3  # a style after the seven emoji styles
    i = [m["key"] for m in images.meta].index("green")
    assert images.alpha[i, 0, 0, 0] == 0 and images.alpha[i, 0, 8, 8] == 255
    assert images.images[i, :, 0, 0].tolist() == [255, 255, 255]  # transparent → white
    caps = load_captions(images, FakeTokenizer())
    assert caps.count.tolist() == [len(m["captions"]["en"]) for m in images.meta]
    assert not caps.names_style.any()


def test_import_splits_and_key_collisions(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(60):
        Image.new("RGB", (8, 8), (i, i, i)).save(src / f"img.{i}.png")
        (src / f"img.{i}.txt").write_text(f"grey {i}")
    Image.new("RGB", (8, 8)).save(src / "img_0.png")  # "img.0" and "img_0" both make the key "img_0"
    (src / "img_0.txt").write_text("a clash")
    m = import_data(ImportConfig(src=src, out=tmp_path / "out", sizes=(8,), val_percent=20, test_percent=20))
    assert sum(c["total"] for c in m["counts"].values()) == 61
    assert {"train", "val", "test"} <= set(m["counts"])
    keys = [json.loads(s["json"])["key"] for s in iter_samples(sorted((tmp_path / "out").rglob("*.tar")))]
    assert len(keys) == len(set(keys)) == 61


def test_import_webdataset_shards_keeps_their_fields(built: tuple[Path, dict], tmp_path: Path) -> None:
    data, manifest = built
    out = tmp_path / "again"
    m = import_data(ImportConfig(src=data / "shards" / "16", out=out, sizes=(16,)))
    assert m["source_format"] == "webdataset"
    assert {s: c["total"] for s, c in m["counts"].items()} == {
        s: c["total"] for s, c in manifest["counts"].items()
    }
    sample = next(iter_samples(sorted((out / "shards" / "16").glob("holdout-*.tar"))))
    meta = json.loads(sample["json"])
    assert meta["split"] == "holdout" and meta["style"] in STYLES and set(meta["captions"]) >= {"en", "de"}
    assert load_images(out, 16, "train").style_ids.max() < len(STYLES)


def test_import_of_our_shards_keeps_their_licences(built: tuple[Path, dict], tmp_path: Path) -> None:
    data, manifest = built
    kept = {st for c in manifest["counts"].values() for st in c if st != "total"}
    want = {k: v for k, v in manifest["sources"].items() if k not in STYLES or k in kept}
    assert want["captions"]["license"] and any(k in STYLES for k in want)
    m = import_data(ImportConfig(src=data / "shards" / "16", out=tmp_path / "again", sizes=(16,)))
    assert m["sources"] == want
    part = import_data(ImportConfig(src=data / "shards" / "16" / "train-*.tar", out=tmp_path / "part", sizes=(16,)))
    assert part["sources"] == {k: v for k, v in want.items() if k not in STYLES or k in part["counts"]["train"]}
    again = import_data(ImportConfig(src=tmp_path / "again" / "shards", out=tmp_path / "twice", sizes=(16,)))
    assert again["sources"] == want  # an import of an import keeps them too


def test_import_img2dataset_output(tmp_path: Path) -> None:
    shards = tmp_path / "web"
    with ShardWriter(shards, "00000") as w:
        w.write(
            "000000000",
            {
                "jpg": image_bytes(Image.new("RGB", (30, 20), "red"), "JPEG"),
                "txt": "a red thing",
                "json": {"url": "u", "caption": "a red thing", "status": "success"},
            },
        )
        w.write(
            "000000001",
            {
                "jpg": image_bytes(Image.new("RGB", (20, 20), "blue"), "JPEG"),
                "json": {"caption": "only in the json"},
            },
        )
        w.write("000000002", {"txt": "no image"})
    assert source_kind(shards) == "webdataset"
    m = import_data(
        ImportConfig(src=shards, out=tmp_path / "out", sizes=(16,), val_percent=0, test_percent=0)
    )
    assert m["counts"]["train"]["total"] == 2 and m["skipped"] == {"no_image": 1}
    metas = [json.loads(s["json"]) for s in iter_samples(sorted((tmp_path / "out").rglob("*.tar")))]
    assert [x["captions"]["en"] for x in metas] == [["a red thing"], ["only in the json"]]
    assert metas[0]["url"] == "u" and metas[0]["style"] == "user"


def test_import_nothing_usable_fails(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "a.png")
    with pytest.raises(ValueError, match="no usable images"):
        import_data(ImportConfig(src=tmp_path / "src", out=tmp_path / "out"))


def test_safe_key() -> None:
    assert safe_key("cats/Blue Cat.v2") == "cats_Blue_Cat_v2"
    assert safe_key("../") == "sample"


def _shard_samples(out: Path) -> int:
    return sum(1 for p in (out / "shards").rglob("*.tar") for _ in iter_samples([p]))


def test_a_failed_or_interrupted_import_leaves_the_dataset_as_it_was(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = import_data(ImportConfig(src=folder, out=out, sizes=(16,), workers=1))
    files = sorted(p.relative_to(out) for p in out.rglob("*"))
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    Image.new("RGB", (8, 8)).save(nothing / "a.png")  # no caption: nothing usable
    with pytest.raises(ValueError, match="no usable images"):
        import_data(ImportConfig(src=nothing, out=out, sizes=(16,), workers=1))

    def ctrl_c(_: str, done: int, total: int | None) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_data(ImportConfig(src=folder, out=out, sizes=(16, 32), workers=1), ctrl_c)
    with pytest.raises(ValueError, match="not a tar shard"):
        import_data(ImportConfig(src=folder / "green.png", out=out, sizes=(16,), workers=1))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == files  # no staging folder left either
    assert json.loads((out / "manifest.json").read_text()) == before
    assert _shard_samples(out) == before["images_rendered"]


def test_reimport_a_datasets_own_shards_into_it(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = import_data(ImportConfig(src=folder, out=out, sizes=(16,), workers=1))
    after = import_data(ImportConfig(src=out / "shards" / "16", out=out, sizes=(16, 32), workers=1))
    assert after["images_per_size"] == {"16": before["images_rendered"], "32": before["images_rendered"]}
    assert _shard_samples(out) == 2 * before["images_rendered"]
    assert json.loads((out / "manifest.json").read_text()) == after
