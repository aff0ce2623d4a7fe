"""`unclip generate|edit|outpaint|vary|blend|upscale` end to end on the tiny model, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unclip.cli import app
from unclip.cli.blend import parse_blend_items
from unclip.cli.common import CliError, make_grid

runner = CliRunner()
# --threads 1: the tiny model gains nothing from threads, and one thread never spin-waits on a busy machine
FAST = ["--steps", "2", "--quiet", "--threads", "1"]


def invoke(*args: str | Path, ok: bool = True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def paths(result) -> list[Path]:
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


def text_chunks(path: Path) -> dict[str, str]:
    with Image.open(path) as im:
        return dict(im.text)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def fails(result, code: int, *needles: str) -> str:
    """The command failed cleanly: the exit code, one line on stderr, no traceback."""
    assert result.exit_code == code, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.strip()
    assert err.startswith("Error: ") and "\n" not in err and "Traceback" not in result.output, err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------------------------- generate
def test_generate_writes_pngs_with_metadata_and_grid(tiny_model: Path, tmp_path: Path) -> None:
    r = invoke(
        "generate",
        "grinning face",
        "-n",
        "2",
        "--seed",
        "7",
        "--model",
        tiny_model,
        "--out",
        tmp_path,
        "--grid",
        "--negative-prompt",
        "blurry",
        *FAST,
    )
    files = paths(r)
    assert len(files) == 3 and all(p.is_file() and p.parent == tmp_path for p in files)
    assert files[-1].name.endswith("-grid.png")
    for p, seed in zip(files[:2], (7, 8), strict=True):
        meta = text_chunks(p)
        assert meta["unclip:seed"] == str(seed)
        assert meta["unclip:prompt"] == "grinning face"
        assert meta["unclip:model"] == tiny_model.name
        assert meta["unclip:steps"] == "2"
        assert meta["unclip:sampler"] == "dpm++"
        assert meta["unclip:command"] == "generate"
        assert meta["unclip:negative_prompt"] == "blurry"
        assert meta["unclip:size"] == "256x256"
        assert "unclip:signature" in meta and "unclip:created" in meta
        with Image.open(p) as im:
            assert im.size == (256, 256)
    grid = text_chunks(files[-1])
    assert json.loads(grid["unclip:seeds"]) == [7, 8]
    with Image.open(files[-1]) as im:
        assert im.size == (2 * 256 + 4, 256)
    from unclip.safety.provenance import verify

    assert verify(files[0]).from_unclip


def test_size_in_the_api_form(tiny_model: Path, tmp_path: Path) -> None:
    r = invoke("generate", "red apple", "-n", "1", "--size", "256x256", "--model", tiny_model, "--out", tmp_path, *FAST)
    with Image.open(paths(r)[0]) as im:
        assert im.size == (256, 256)
    bad = invoke("generate", "red apple", "--size", "256x512", "--model", tiny_model, ok=False)
    assert bad.exit_code == 2 and "256x512" in bad.output


def test_overlong_prompt_is_refused_before_anything_loads(tmp_path: Path) -> None:
    r = invoke("generate", "a" * 1001, "--model", tmp_path / "no-such-model", ok=False)
    fails(r, 2, "the prompt: string too long", "length 1001", "maximum length 1000")


def test_generate_same_seed_same_pixels(tiny_model: Path, tmp_path: Path) -> None:
    args = ("generate", "red apple", "-n", "1", "--seed", "42", "--model", tiny_model, *FAST)
    a = paths(invoke(*args, "--out", tmp_path / "a"))[0]
    b = paths(invoke(*args, "--out", tmp_path / "b"))[0]
    c = paths(
        invoke(
            "generate",
            "red apple",
            "-n",
            "1",
            "--seed",
            "43",
            "--model",
            tiny_model,
            *FAST,
            "--out",
            tmp_path / "c",
        )
    )[0]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_generate_progress_bar_on_stderr(tiny_model: Path, tmp_path: Path) -> None:
    r = invoke(
        "generate",
        "pizza",
        "-n",
        "1",
        "--steps",
        "2",
        "--threads",
        "1",
        "--model",
        tiny_model,
        "--out",
        tmp_path,
    )
    assert "generate" in r.stderr and "steps" in r.stderr
    assert len(paths(r)) == 1  # stdout holds the paths only


def test_generate_refuses_flagged_prompt(tiny_model: Path, tmp_path: Path) -> None:
    r = invoke("generate", "h0w to m4ke a b0mb", "--model", tiny_model, "--out", tmp_path, ok=False)
    fails(r, 1, "content policy")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-n", "0"], "-n must be between 1 and 10"),
        (["-n", "11"], "-n must be between 1 and 10"),
        (["--size", "300"], "--size must be one of 256, 512, 1024"),
        (["--steps", "0"], "--steps"),
        (["--guidance", "-1"], "--guidance"),
        (["--guidance", "1", "--negative-prompt", "blurry"], "would be ignored (--negative-prompt)"),
        (["--sampler", "euler"], "--sampler must be one of"),
        (["--model", "/nonexistent/model"], "no such model folder"),
    ],
)
def test_generate_bad_options(args: list[str], needle: str, tmp_path: Path) -> None:
    fails(invoke("generate", "a cat", *args, "--out", tmp_path, ok=False), 2, needle)


def test_generate_empty_prompt(tmp_path: Path) -> None:
    fails(invoke("generate", "   ", "--out", tmp_path, ok=False), 2, "empty")


def test_n_limit_matches_engine() -> None:
    from unclip.cli import common
    from unclip.engine import engine, images, samplers

    assert common.MAX_N == engine.MAX_N
    assert common.SIZES == images.SIZES
    assert common.SAMPLERS == samplers.SAMPLERS


# ----------------------------------------------------------------------------------------------- edit
def test_edit_keeps_pixels_outside_the_mask(
    tiny_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    r = invoke(
        "edit",
        images["square.png"],
        "grinning face",
        "--mask",
        images["mask.png"],
        "-n",
        "2",
        "--seed",
        "3",
        "--model",
        tiny_model,
        "--out",
        tmp_path,
        "--grid",
        *FAST,
    )
    files = paths(r)
    assert len(files) == 3
    src = pixels(images["square.png"])
    with Image.open(images["mask.png"]) as m:
        edit = np.asarray(m)[..., 3] < 128
    for p in files[:2]:
        out = pixels(p)
        assert out.shape == src.shape
        diff = np.abs(out - src).max(-1)
        # outside the mask: unchanged but for the invisible watermark, which moves no pixel more than 2/255
        assert diff[~edit].max() <= 2
        # inside: repainted by the (random) model
        assert diff[edit].mean() > 3 * diff[~edit].mean()
        meta = text_chunks(p)
        assert meta["unclip:mode"] == "edit" and meta["unclip:mask"] == "mask.png"
        assert meta["unclip:source"] == "square.png"


def test_edit_exact_outside_mask_in_engine(tiny_model: Path, images: dict[str, Path]) -> None:
    """Before provenance marking, the engine returns the pixels outside the mask exactly."""
    from unclip.cli.common import engine_for, read_image

    img, mask = read_image(images["square.png"]), read_image(images["mask.png"])
    out = np.asarray(
        engine_for(tiny_model, threads=1, quiet=True).edit(img, "cat", mask=mask, seed=1, steps=2)[0]
    )
    keep = np.asarray(mask)[..., 3] >= 128
    assert np.array_equal(out[keep], np.asarray(img.convert("RGB"))[keep])


def test_edit_with_image_alpha_and_grey_mask(
    tiny_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    r = invoke(
        "edit",
        images["holed.png"],
        "red heart",
        "-n",
        "1",
        "--seed",
        "1",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "alpha",
        *FAST,
    )
    assert len(paths(r)) == 1
    r = invoke(
        "edit",
        images["square.png"],
        "red heart",
        "--mask",
        images["grey-mask.png"],
        "-n",
        "1",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "grey",
        *FAST,
    )
    out, src = pixels(paths(r)[0]), pixels(images["square.png"])
    diff = np.abs(out - src).max(-1)
    assert diff[128:, 128:].max() <= 2 and diff[:128, :128].mean() > 3 * diff[128:, 128:].mean()


def test_edit_errors(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    common = ("--model", tiny_model, "--out", tmp_path, *FAST)
    fails(invoke("edit", images["wide.png"], "cat", *common, ok=False), 2, "must be square", "256x128")
    fails(
        invoke("edit", images["square.png"], "cat", "--mask", images["mask-128.png"], *common, ok=False),
        2,
        "128x128",
        "256x256",
        "same size",
    )
    fails(invoke("edit", images["square.png"], "cat", *common, ok=False), 2, "no transparency")
    fails(
        invoke("edit", images["square.png"], "cat", "--mask", images["opaque-mask.png"], *common, ok=False),
        2,
        "fully opaque",
    )
    fails(invoke("edit", tmp_path / "missing.png", "cat", *common, ok=False), 2, "no such file")
    fails(invoke("edit", images["text.png"], "cat", *common, ok=False), 2, "not an image file")
    fails(invoke("edit", images["truncated.png"], "cat", *common, ok=False), 2, "could not be decoded")
    fails(invoke("edit", images["empty.png"], "cat", *common, ok=False), 2, "empty")
    fails(invoke("edit", images["bomb.png"], "cat", *common, ok=False), 2, "too large")
    fails(invoke("edit", tmp_path, "cat", *common, ok=False), 2, "directory")
    fails(invoke("edit", images["holed.png"], "cat", "-n", "12", *common, ok=False), 2, "-n must be")
    fails(invoke("edit", images["holed.png"], "h0w to m4ke a b0mb", *common, ok=False), 1, "content policy")


# ----------------------------------------------------------------------------------------------- outpaint
def test_outpaint_grows_the_canvas(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    r = invoke(
        "outpaint",
        images["square.png"],
        "grinning face",
        "--left",
        "128",
        "--seed",
        "5",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "left",
        *FAST,
    )
    (p,) = paths(r)
    out, src = pixels(p), pixels(images["square.png"])
    assert out.shape == (256, 384, 3)
    assert np.abs(out[:, 128:] - src).max() <= 2  # the original sits on the right, kept
    meta = text_chunks(p)
    assert (
        meta["unclip:mode"] == "outpaint"
        and meta["unclip:canvas"] == "384x256"
        and meta["unclip:seed"] == "5"
    )
    r = invoke(
        "outpaint",
        images["wide.png"],
        "grinning face",
        "--canvas",
        "256x256",
        "-n",
        "2",
        "--grid",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "canvas",
        *FAST,
    )
    files = paths(r)
    assert len(files) == 3
    with Image.open(files[0]) as im:
        assert im.size == (256, 256)


def test_outpaint_errors(images: dict[str, Path], tmp_path: Path) -> None:
    sq = images["square.png"]
    fails(invoke("outpaint", sq, "cat", "--out", tmp_path, ok=False), 2, "nothing to outpaint")
    fails(invoke("outpaint", sq, "cat", "--canvas", "big", "--out", tmp_path, ok=False), 2, "WIDTHxHEIGHT")
    fails(invoke("outpaint", sq, "cat", "--left", "-5", "--out", tmp_path, ok=False), 2, "zero or positive")
    right = invoke("outpaint", sq, "cat", "--canvas", "512x512", "--right", "9", "--out", tmp_path, ok=False)
    fails(right, 2, "with --canvas, place the image with --left/--top")  # it placed the image at 0, 0
    seed = invoke("generate", "cat", "--seed", "-1", "--out", tmp_path, ok=False)  # it wrapped round
    assert seed.exit_code == 2 and "--seed" in seed.output


def test_outpaint_places_the_image_on_the_canvas_where_asked(
    tiny_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    src = pixels(images["square.png"])  # 256 px
    for place, (x, y) in [((), (128, 128)), (("--left", "0", "--top", "0"), (0, 0)), (("--top", "0"), (128, 0))]:
        r = invoke("outpaint", images["square.png"], "cat", "--canvas", "512x512", *place, "--model", tiny_model,
                   "--out", tmp_path / f"{x}-{y}", *FAST)  # fmt: skip
        (p,) = paths(r)
        assert np.abs(pixels(p)[y : y + 256, x : x + 256] - src).max() <= 2, place


def test_outpaint_canvas_smaller_than_image(
    tiny_model: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    r = invoke(
        "outpaint",
        images["square.png"],
        "cat",
        "--canvas",
        "128x128",
        "--model",
        tiny_model,
        "--out",
        tmp_path,
        *FAST,
        ok=False,
    )
    fails(r, 2, "smaller than the image")


# ----------------------------------------------------------------------------------------------- vary
def test_vary(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    r = invoke(
        "vary",
        images["photo.jpg"],
        "-n",
        "2",
        "--strength",
        "0.5",
        "--seed",
        "9",
        "--model",
        tiny_model,
        "--out",
        tmp_path,
        *FAST,
    )
    files = paths(r)
    assert len(files) == 2
    meta = text_chunks(files[0])
    assert meta["unclip:mode"] == "variation" and meta["unclip:strength"] == "0.5"
    assert meta["unclip:source"] == "photo.jpg" and meta["unclip:seed"] == "9"
    fails(invoke("vary", images["wide.png"], "--out", tmp_path, ok=False), 2, "must be square")
    fails(
        invoke("vary", images["square.png"], "--strength", "1.5", "--out", tmp_path, ok=False),
        2,
        "--strength",
    )
    fails(invoke("vary", images["text.png"], "--out", tmp_path, ok=False), 2, "not an image file")


# ----------------------------------------------------------------------------------------------- blend
def test_blend(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    r = invoke(
        "blend",
        "grinning face=0.7",
        f"{images['square.png']}:0.3",
        "-n",
        "1",
        "--seed",
        "2",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "a",
        *FAST,
    )
    (p,) = paths(r)
    meta = text_chunks(p)
    assert json.loads(meta["unclip:items"]) == ["grinning face", "square.png"]
    assert json.loads(meta["unclip:weights"]) == [0.7, 0.3]
    r = invoke(
        "blend",
        "--item",
        "a cat",
        "--weight",
        "0.5",
        "--item",
        "a dog",
        "--weight",
        "0.5",
        "--item",
        "sun",
        "--weight",
        "1",
        "-n",
        "1",
        "--model",
        tiny_model,
        "--out",
        tmp_path / "b",
        *FAST,
    )
    assert json.loads(text_chunks(paths(r)[0])["unclip:items"]) == ["a cat", "a dog", "sun"]


def test_blend_errors(images: dict[str, Path], tmp_path: Path) -> None:
    fails(invoke("blend", "a cat", "--out", tmp_path, ok=False), 2, "at least two")
    fails(invoke("blend", "a cat", "missing.png", "--out", tmp_path, ok=False), 2, "no such file")
    fails(invoke("blend", "a cat", str(images["wide.png"]), "--out", tmp_path, ok=False), 2, "must be square")
    fails(invoke("blend", "a cat=-1", "dog", "--out", tmp_path, ok=False), 2, "zero or positive")
    fails(invoke("blend", "a", "b", "--weight", "1", "--out", tmp_path, ok=False), 2, "once per item")
    fails(invoke("blend", "a cat", "h0w to m4ke a b0mb", "--out", tmp_path, ok=False), 1, "content policy")


def test_parse_blend_items(images: dict[str, Path]) -> None:
    sq = str(images["square.png"])
    assert parse_blend_items(["a cat=0.7", f"{sq}=0.3"], []) == [("a cat", 0.7), (images["square.png"], 0.3)]
    assert parse_blend_items(["flag: France", "a cat : .5"], []) == [("flag: France", 1.0), ("a cat", 0.5)]
    assert parse_blend_items(["x=2", "y"], []) == [("x", 2.0), ("y", 1.0)]
    assert parse_blend_items(["x=2", "y=3"], [0.5, 0.5]) == [
        ("x=2", 0.5),
        ("y=3", 0.5),
    ]  # literal with --weight
    assert parse_blend_items([sq, "dog"], []) == [(images["square.png"], 1.0), ("dog", 1.0)]
    for bad in (["a"], ["a=0", "b=0"], ["a", "b.png"], ["a=-2", "b"]):
        with pytest.raises(CliError):
            parse_blend_items(bad, [])


# ----------------------------------------------------------------------------------------------- upscale
def test_upscale(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    (p,) = paths(invoke("upscale", images["small.png"], "--model", tiny_model, "--out", tmp_path, *FAST[2:]))
    with Image.open(p) as im:
        assert im.size == (256, 256)
    meta = text_chunks(p)
    assert meta["unclip:mode"] == "upscale" and meta["unclip:source_size"] == "64x64"
    fails(invoke("upscale", images["big.png"], "--out", tmp_path, ok=False), 2, "up to 256 px")
    fails(invoke("upscale", images["text.png"], "--out", tmp_path, ok=False), 2, "not an image file")


# ----------------------------------------------------------------------------------------------- helpers
def test_grid_layout() -> None:
    ims = [Image.new("RGB", (10, 10), (i * 40, 0, 0)) for i in range(5)]
    sheet = make_grid(ims, gap=2)
    assert sheet.size == (3 * 10 + 2 * 2, 2 * 10 + 2)
    assert sheet.getpixel((12, 0)) == (40, 0, 0) and sheet.getpixel((12, 12)) == (160, 0, 0)


def test_help_lists_commands_and_is_fast() -> None:
    import subprocess
    import sys
    import time

    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "unclip", "--help"], capture_output=True, text=True, check=True
    )
    assert time.perf_counter() - t < 15
    for cmd in ("generate", "edit", "outpaint", "vary", "blend", "upscale", "bench"):
        assert cmd in out.stdout
    code = "import sys, unclip.cli; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


@pytest.mark.slow
def test_generate_on_the_bundled_model(tmp_path: Path) -> None:
    from unclip import BUNDLED_MODEL_DIR

    if not (BUNDLED_MODEL_DIR / "prior").is_dir():
        pytest.skip("the bundled model is not installed")
    r = invoke("generate", "grinning face, noto style", "-n", "2", "--seed", "1", "--out", tmp_path, "--grid")
    files = paths(r)
    assert len(files) == 3
    meta = text_chunks(files[0])
    assert meta["unclip:model"] == BUNDLED_MODEL_DIR.name and meta["unclip:seed"] == "1"
    with Image.open(files[0]) as im:
        assert im.size == (256, 256)
        assert np.asarray(im).std() > 5  # not a blank image


# ------------------------------------------------------------------------------------ review 2026-12-07
def test_an_unusable_out_is_refused_before_the_model_runs(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import unclip.cli.generate as generate

    monkeypatch.setattr(generate, "engine_for", lambda *a, **k: pytest.fail("the model ran"))
    (tmp_path / "a-file").write_text("x")
    r = invoke("generate", "a red apple", "--model", tiny_model, "--out", tmp_path / "a-file" / "sub", *FAST, ok=False)
    fails(r, 2, "--out", "cannot create the folder")


def test_prompts_are_checked_as_the_server_checks_them(tiny_model: Path, tmp_path: Path) -> None:
    base = ["--model", tiny_model, "--out", tmp_path / "o", *FAST]
    fails(invoke("generate", "\u200b", *base, ok=False), 2, "empty string")
    fails(invoke("generate", "a cat", "--negative-prompt", "x" * 1001, *base, ok=False), 2, "--negative-prompt")
    fails(invoke("generate", "a cat \udcff", *base, ok=False), 2, "not valid Unicode")
    assert not (tmp_path / "o").exists()


def test_a_folder_is_not_a_blend_prompt(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="a folder, not an image file"):
        parse_blend_items([str(tmp_path), "a cat"], [])
    assert parse_blend_items(["outputs", "a cat"], []) == [("outputs", 1.0), ("a cat", 1.0)]  # a word stays one


def test_a_low_bit_colour_key_is_transparency_as_on_the_server(tmp_path: Path) -> None:
    from unclip.cli.common import read_image
    from unclip.safety.uploads import read_image_upload

    img = Image.new("1", (256, 256), 1)
    img.paste(0, (64, 64, 128, 128))
    img.save(tmp_path / "keyed.png", transparency=0)
    cli, server = read_image(tmp_path / "keyed.png"), read_image_upload((tmp_path / "keyed.png").read_bytes())
    assert cli.mode == server.mode == "RGBA" and np.array_equal(np.asarray(cli), np.asarray(server))


def test_metadata_says_how_to_make_the_image_again(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    base = ["--model", tiny_model, "--seed", "1", "--guidance", "9", *FAST]
    for args in (("edit", images["holed.png"], "a cat"), ("vary", images["square.png"]),
                 ("blend", "a cat", images["square.png"])):  # fmt: skip
        out = paths(invoke(*args, "-n", "1", "--out", tmp_path / args[0], *base))[0]
        assert text_chunks(out)["unclip:guidance"] == "9.0", args[0]
    out = paths(invoke("outpaint", images["wide.png"], "a beach", "--canvas", "512x256", "--out", tmp_path / "p",
                       *base))[0]  # fmt: skip
    meta = text_chunks(out)
    assert [meta[f"unclip:{k}"] for k in ("left", "top", "right", "bottom")] == ["128", "64", "128", "64"]


def test_an_outpaint_too_large_names_the_flags_given(tiny_model: Path, images: dict[str, Path], tmp_path: Path) -> None:
    base = ["--model", tiny_model, "--out", tmp_path / "o", *FAST]
    fails(invoke("outpaint", images["wide.png"], "sky", "--left", "5000", *base, ok=False), 2, "--left/--right")
    fails(invoke("outpaint", images["wide.png"], "sky", "--canvas", "5000x200", *base, ok=False), 2, "(--canvas)")
