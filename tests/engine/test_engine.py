"""The engine on a tiny random-weight model: every capability, seeds, progress, cancel and input errors."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip.engine import Cancelled, Engine, InvalidInput


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    e = Engine.load(tiny_model)
    e.prior_steps, e.decoder_steps = 3, 3
    return e


def _rgba_with_hole(size: int = 256) -> Image.Image:
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(0, 255, (size, size, 3)), np.full((size, size, 1), 255)], -1).astype(
        np.uint8
    )
    a[size // 4 : size // 2, size // 4 : size // 2, 3] = 0
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize(("size", "n"), [(256, 1), (512, 2), (1024, 1)])
def test_generate_sizes_and_batch(engine: Engine, size: int, n: int) -> None:
    images = engine.generate("a red apple", n=n, size=size, seed=3)
    assert [im.size for im in images] == [(size, size)] * n
    meta = images[-1].info["unclip"]
    assert meta["seed"] == 3 + n - 1 and meta["prompt"] == "a red apple" and meta["sampler"] == "dpm++"


def test_same_seed_same_images_and_other_seed_differs(engine: Engine) -> None:
    a = engine.generate("a cat", n=2, seed=11)
    b = engine.generate("a cat", n=2, seed=11)
    c = engine.generate("a cat", n=2, seed=12)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_a_batch_of_captions_gives_each_the_images_generate_gives_it(engine: Engine) -> None:
    steps: list[tuple[int, int]] = []
    batch = engine.generate_batch(
        ["a cat", "a red apple"], [2, 1], [11, 5], progress=lambda s, t: steps.append((s, t))
    )
    assert [len(b) for b in batch] == [2, 1] and steps[-1][0] == steps[-1][1]
    for prompt, n, seed, images in zip(["a cat", "a red apple"], [2, 1], [11, 5], batch, strict=True):
        alone = engine.generate(prompt, n=n, seed=seed)
        for a, b in zip(alone, images, strict=True):
            assert b.info["unclip"]["prompt"] == prompt and b.info["unclip"]["seed"] == a.info["unclip"]["seed"]
            assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 2  # batched arithmetic
    with pytest.raises(InvalidInput):
        engine.generate_batch(["a cat", "a dog"], [1])


@pytest.mark.parametrize("sampler", ["dpm++", "unipc", "ddim", "ddpm"])
def test_samplers(engine: Engine, sampler: str) -> None:
    """Each sampler's seed reproduces its image whatever torch's global random state (ddpm, which adds noise at
    every step, took it from there), and an image of a batch is the one its seed gives alone."""
    torch.manual_seed(1)
    a = engine.generate("a dog", sampler=sampler, steps=3, seed=0, n=2)
    torch.manual_seed(2)
    b = engine.generate("a dog", sampler=sampler, steps=3, seed=0, n=2)
    alone = engine.generate("a dog", sampler=sampler, steps=3, seed=a[1].info["unclip"]["seed"])
    assert a[0].size == (256, 256)
    assert [np.asarray(x).tolist() for x in a] == [np.asarray(x).tolist() for x in b]
    assert np.abs(np.asarray(alone[0], np.int16) - np.asarray(a[1], np.int16)).max() <= 1


@pytest.mark.parametrize("sampler", ["dpm++", "unipc", "ddim", "ddpm"])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_every_sampler_starts_from_pure_noise_however_few_the_steps(sampler: str, steps: int) -> None:
    """ddpm spaced its steps from t=0 ("leading"): one step ran at t=0 and drew noise, two started at t=500."""
    from unclip.engine.samplers import make_scheduler

    sched = make_scheduler(sampler, {"num_train_timesteps": 1000}, "epsilon")
    sched.set_timesteps(steps)
    assert int(sched.timesteps[0]) == 999


def test_progress_and_cancel(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    engine.generate("a sun", progress=lambda s, t: seen.append((s, t)), seed=0)
    assert seen[-1][0] == seen[-1][1] and [s for s, _ in seen] == sorted(s for s, _ in seen)
    cancel = threading.Event()

    def stop(step: int, total: int) -> None:
        if step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.generate("a sun", progress=stop, cancel=cancel, seed=0)


def test_upsampling_reports_progress_and_stops_on_cancel(engine: Engine) -> None:
    """Each image's pass through each upsampler stage is a progress step, and a cancel during upsampling stops
    before the next pass instead of running the job to its end."""
    seen: list[tuple[int, int]] = []
    engine.generate("a sun", n=2, size=1024, progress=lambda s, t: seen.append((s, t)), seed=0)
    decoded = engine.prior_steps + engine.decoder_steps
    assert seen[-1] == (decoded + 4, decoded + 4)  # 2 images x (64 -> 256, 256 -> 1024)
    assert [s for s, _ in seen if s > decoded][:4] == [decoded + 1, decoded + 2, decoded + 3, decoded + 4]
    cancel = threading.Event()
    steps: list[int] = []

    def stop(step: int, total: int) -> None:
        steps.append(step)
        if step == decoded + 1:
            cancel.set()

    with pytest.raises(Cancelled):
        engine.generate("a sun", n=2, size=1024, progress=stop, cancel=cancel, seed=0)
    assert max(steps) == decoded + 1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.upscale(Image.new("RGB", (64, 64), (200, 10, 10)), cancel=cancel)
    done: list[tuple[int, int]] = []
    assert engine.upscale(Image.new("RGB", (64, 64)), progress=lambda s, t: done.append((s, t))).size == (256, 256)
    assert done == [(1, 1)]


def test_edit_keeps_pixels_outside_the_mask(engine: Engine) -> None:
    image = _rgba_with_hole()
    out = engine.edit(image, "a heart", n=2, seed=1)
    assert len(out) == 2 and out[0].size == (256, 256)
    src = np.asarray(image)
    keep = src[..., 3] == 255
    for im in out:
        assert np.array_equal(np.asarray(im)[keep], src[..., :3][keep])
    # an explicit mask of the same size means the same thing
    mask = Image.fromarray(np.where(keep[..., None], 255, 0).repeat(4, -1).astype(np.uint8), "RGBA")
    out2 = engine.edit(image.convert("RGB"), "a heart", mask=mask, seed=1)
    assert np.array_equal(np.asarray(out2[0])[keep], src[..., :3][keep])


def test_edit_repaints_a_small_area_at_a_smaller_size_and_a_whole_mask_to_the_border(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transparent pixel of a 512 px image edited at 256 px vanished from the resized mask (the input came
    back unchanged); a mask of everything kept a fade of the original along the border (the feathering
    counted its padding as outside the mask). The decoder paints black here, so the original shows."""
    monkeypatch.setattr(Engine, "_decode", lambda self, embeds, *a, **k: -torch.ones(embeds.shape[0], 3, 256, 256))
    # taken as drawn: meeting the white around it would make a one-pixel repaint white again
    monkeypatch.setattr("unclip.engine.engine.match_edges", lambda out, orig, repaint: out)
    one = np.full((512, 512, 4), 255, np.uint8)
    one[300, 300, 3] = 0
    out = np.asarray(engine.edit(Image.fromarray(one, "RGBA"), "a cat", size=256, seed=1)[0]).astype(int)
    assert (out == 0).all(axis=-1).sum() >= 1  # the pixel covering it is repainted
    white = Image.new("RGB", (256, 256), (255, 255, 255))
    everything = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    out = np.asarray(engine.edit(white, "a cat", mask=everything, seed=1)[0])
    assert out.max() == 0  # repainted up to the border: no trace of the white original


@pytest.mark.parametrize(("size", "hole"), [(256, 1), (1024, 4)])
def test_a_small_hole_is_repainted_by_the_decoder(engine: Engine, monkeypatch: pytest.MonkeyPatch, size: int,
                                                  hole: int) -> None:  # fmt: skip
    """A hole under 1% of a latent pixel (1 px at 256, 4×4 px at 1024) was not repainted: the decoder kept
    every latent, and the prompt and seed changed nothing."""
    from unclip.engine import diffusion as D

    kept: list[float] = []
    sample = D.sample_decoder

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        kept.append(float(kw["inpaint"].keep.min()))
        return sample(*args, **kw)

    monkeypatch.setattr(D, "sample_decoder", spy)
    image = np.full((size, size, 4), 200, np.uint8)
    image[size // 2 : size // 2 + hole, size // 3 : size // 3 + hole, 3] = 0
    engine.edit(Image.fromarray(image, "RGBA"), "a cat", size=size, seed=1, steps=2)
    assert kept == [0.0]  # some latent pixel is repainted


@pytest.mark.parametrize("size", [256, 1024])
def test_a_separate_mask_a_few_pixels_wide_is_repainted_whole(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """An opaque image and a mask (what the web editor and OpenAI clients send): the new content fades in from
    the mask's edge, but took at most (masked pixels in a 9×9 window)/81 of it, so a painted-over blemish or
    wire stayed as a ghost (a 5×5 blemish under a 7×7 mask kept 142 of 255)."""
    s = size // 256
    monkeypatch.setattr(Engine, "_decode", lambda self, embeds, *a, **k: -torch.ones(len(embeds), 3, size, size))
    img = np.zeros((size, size, 3), np.uint8)  # the decoder paints black, the surroundings: a perfect removal
    img[126 * s : 131 * s, 126 * s : 131 * s] = 255  # a white blemish
    img[:, 40 * s : 41 * s] = 255  # a one-pixel wire
    mask = np.full((size, size, 4), 255, np.uint8)
    mask[125 * s : 132 * s, 125 * s : 132 * s, 3] = 0  # painted over, one pixel around it
    mask[:, 40 * s : 41 * s, 3] = 0  # the wire painted over exactly
    img[10 * s : 74 * s, 150 * s : 214 * s] = 255
    mask[10 * s : 74 * s, 150 * s : 214 * s, 3] = 0  # and a large area, which still fades in at its edge
    out = np.asarray(engine.edit(Image.fromarray(img), "x", mask=Image.fromarray(mask, "RGBA"), size=size)[0])
    assert out[126 * s : 131 * s, 126 * s : 131 * s].max() <= 3 and out[:, 40 * s : 41 * s].max() <= 3
    assert out[40 * s, 182 * s].max() <= 3 and 20 < out[40 * s, 150 * s, 0] < 235
    unmasked = mask[..., 3] == 255
    assert np.array_equal(out[unmasked], img[unmasked])  # nothing outside the mask changes


def test_blend_weights_too_small_for_float32_still_blend(engine: Engine) -> None:
    tiny = engine.blend([("a star", 1e-50), ("a moon", 1e-50)], seed=1)[0]
    same = engine.blend([("a star", 1.0), ("a moon", 1.0)], seed=1)[0]
    assert np.array_equal(np.asarray(tiny), np.asarray(same))  # shares of one half each, not 0 / 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"mask": Image.new("RGBA", (128, 128))}, "mask"),
        ({"mask": Image.new("RGB", (256, 256))}, "mask"),
        ({"mask": Image.new("RGBA", (256, 256), (0, 0, 0, 255))}, "mask"),
    ],
)
def test_edit_mask_errors(engine: Engine, kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        engine.edit(Image.new("RGB", (256, 256)), "x", **kwargs)
    assert err.value.param == param


def test_input_errors(engine: Engine) -> None:
    cases = [
        (lambda: engine.generate("x", size=300), "size"),
        (lambda: engine.generate("x", n=11), "n"),
        (lambda: engine.generate("x", n=0), "n"),
        (lambda: engine.generate(""), "prompt"),
        (lambda: engine.generate("x" * 1001), "prompt"),
        (lambda: engine.generate("x", sampler="euler-z"), "sampler"),
        (lambda: engine.edit(Image.new("RGBA", (256, 128)), "x"), "image"),
        (lambda: engine.edit(Image.new("RGB", (256, 256)), "x"), "image"),
        (lambda: engine.vary(Image.new("RGB", (300, 200))), "image"),
        (lambda: engine.vary(Image.new("RGB", (256, 256)), strength=0), "strength"),
        (lambda: engine.blend([("a cat", 1.0)]), "items"),
        (lambda: engine.blend([("a cat", -1.0), ("a dog", 1.0)]), "weights"),
        (lambda: engine.blend([("a cat", float("nan")), ("a dog", 1.0)]), "weights"),  # drew a black image
        (lambda: engine.blend([("a cat", float("inf")), ("a dog", 1.0)]), "weights"),
        (lambda: engine.outpaint(Image.new("RGB", (256, 256)), "x"), "extend"),
        (lambda: engine.outpaint(Image.new("RGB", (256, 256)), "x", canvas=(128, 512)), "canvas"),
        (lambda: engine.outpaint(Image.new("RGB", (256, 256)), "x", canvas=(512, 512), left=10), "canvas"),
        (lambda: engine.outpaint(Image.new("RGB", (256, 256)), "x", right=5000), "extend"),  # the sides given
        (lambda: engine.upscale(Image.new("RGB", (512, 512))), "image"),
        (lambda: engine.generate("x", guidance=1.0, negative_prompt="y"), "negative_prompt"),
    ]
    for call, param in cases:
        with pytest.raises(InvalidInput) as err:
            call()
        assert err.value.param == param, param


def test_a_negative_prompt_under_a_models_default_guidance_of_one_is_refused(tiny_model: Path) -> None:
    """A model whose default guidance is 1 or below would ignore the negative prompt: the engine refuses it
    (the API checks a guidance it is given before the charge; the model's default only the engine knows)."""
    plain = Engine.load(tiny_model)
    plain.guidance = 1.0
    with pytest.raises(InvalidInput) as err:
        plain.generate("x", negative_prompt="y", steps=2)
    assert err.value.param == "negative_prompt"
    assert plain.generate("x", negative_prompt="y", guidance=3.0, steps=2)


def test_outpaint_grows_the_canvas_and_keeps_the_original(engine: Engine) -> None:
    src = engine.generate("a tree", seed=5)[0]
    wide = engine.outpaint(src, "a forest", left=128, right=256, seed=1)
    assert wide.size == (640, 256)
    assert np.array_equal(np.asarray(wide)[:, 128:384], np.asarray(src))
    assert np.asarray(wide)[:, :128].std() > 1  # painted, not a blank (or NaN-black) fill
    pano = engine.outpaint(src, "a forest", canvas=(1024, 512), seed=1)
    assert pano.size == (1024, 512) and pano.info["unclip"]["frames"] >= 6
    assert np.array_equal(np.asarray(pano)[128:384, 384:640], np.asarray(src))


def test_vary_blend_upscale(engine: Engine) -> None:
    src = engine.generate("a star", seed=2)[0]
    seen: list[tuple[int, int]] = []
    close = engine.vary(src, n=2, strength=0.3, seed=1, steps=10, progress=lambda s, t: seen.append((s, t)))
    # the steps that run: the bar moved 1/10 at a time up to 3/10 and then jumped to the end
    total = seen[-1][1]
    assert {t for _, t in seen} == {total} and [s for s, _ in seen[:-1]] == list(range(1, total + 1))
    free = engine.vary(src, n=1, size=512, seed=1)
    assert [im.size for im in close] == [(256, 256)] * 2 and free[0].size == (512, 512)
    mixed = engine.blend([("a star", 0.5), (src, 0.5)], n=2, seed=1)
    assert len(mixed) == 2 and mixed[0].info["unclip"]["items"] == ["a star", "<image>"]
    three = engine.blend([("a star", 1), ("a moon", 1), (src, 2)], seed=1)
    assert three[0].size == (256, 256)
    assert engine.upscale(src.resize((64, 64))).size == (256, 256)
    assert engine.upscale(src).size == (1024, 1024)
    assert engine.upscale(src.resize((200, 100))).size == (800, 400)


def test_public_kandinsky_folder_names_and_no_upsamplers(tiny_model: Path, tmp_path: Path) -> None:
    root = tmp_path / "kandinsky"
    root.mkdir()
    shutil.copytree(tiny_model / "prior", root / "kandinsky-2-2-prior")
    shutil.copytree(tiny_model / "decoder", root / "kandinsky-2-2-decoder")
    e = Engine.load(root)
    e.prior_steps, e.decoder_steps = 2, 2
    assert "upscale" not in e.capabilities and e.c.inpaint_unet is None
    # without learned upsamplers the decoder renders the requested size directly
    assert e.generate("a cat", size=512, seed=0)[0].size == (512, 512)
    hole = _rgba_with_hole()
    out = e.edit(hole, "a cat", seed=0)[0]  # the decoder repaints alone
    keep = np.asarray(hole)[..., 3] == 255
    assert np.array_equal(np.asarray(out)[keep], np.asarray(hole)[..., :3][keep])
    # a frame of any size (its latent did not divide by the UNet's downsampling: a RuntimeError)
    small = Image.fromarray(np.random.default_rng(1).integers(0, 255, (70, 100, 3), dtype=np.uint8))
    grown = e.outpaint(small, "a cat", bottom=1, seed=1)
    assert grown.size == (100, 71) and np.array_equal(np.asarray(grown)[:70], np.asarray(small))


def test_image_embeddings_follow_the_model_folders_image_normalisation(tiny_model: Path, tmp_path: Path) -> None:
    """Public Kandinsky 2.2 normalises CLIP's input with OpenAI's means and deviations (its image_processor, as
    its pipelines read it); the engine fed every model [-1, 1], right only for ours (0.5 / 0.5)."""
    import json
    import shutil

    from transformers import CLIPImageProcessor

    root = tmp_path / "kandinsky-like"
    shutil.copytree(tiny_model, root)
    config = root / "prior" / "image_processor" / "preprocessor_config.json"
    settings = json.loads(config.read_text())
    settings["image_mean"] = [0.48145466, 0.4578275, 0.40821073]
    settings["image_std"] = [0.26862954, 0.26130258, 0.27577711]
    config.write_text(json.dumps(settings))
    engine = Engine.load(root, threads=1)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    pixels = CLIPImageProcessor.from_pretrained(root / "prior" / "image_processor")(img, return_tensors="pt")
    with torch.inference_mode():
        expected = engine.c.image_encoder(pixel_values=pixels.pixel_values).image_embeds
        assert torch.allclose(engine._image_embeds([img]), expected, atol=1e-4)
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert Engine.load(tiny_model, threads=1).c.clip_pixels(x) is x  # ours: [-1, 1] as it is


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        Engine.load(tmp_path)
    with pytest.raises(InvalidInput):
        Engine.load(tmp_path / "missing")


def test_slerp_keeps_norms_and_survives_zero_vectors() -> None:
    from unclip.engine.diffusion import slerp

    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(), torch.tensor(4.0)) and torch.allclose(mid[0, 0], mid[0, 1])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    zero = torch.zeros(1, 2)
    assert torch.equal(slerp(zero, b, 0.25), 0.25 * b)  # no direction to turn from: linear, not NaN


def test_prior_reranking_keeps_the_candidate_closest_to_the_text(engine: Engine) -> None:
    import torch.nn.functional as F

    from unclip.engine import diffusion as D

    seeds, hook = [3, 4, 5], lambda: None
    try:
        engine.prior_candidates = 1
        single = engine._prior("a red apple", seeds, engine.prior_guidance, 4, hook)
        engine.prior_candidates = 4
        ranked = engine._prior("a red apple", seeds, engine.prior_guidance, 4, hook)
        alone = engine._prior("a red apple", seeds[1:2], engine.prior_guidance, 4, hook)
    finally:
        engine.prior_candidates = type(engine).prior_candidates
    text = F.normalize(engine._text(["a red apple"]).embeds.float(), dim=-1)
    cos = lambda e: (F.normalize(e.float(), dim=-1) * text).sum(-1)  # noqa: E731
    assert (cos(ranked) >= cos(single) - 1e-6).all()  # the first candidate is the unranked sample
    assert torch.allclose(ranked[1:2], alone, atol=1e-5)  # each output depends on its own seed only
    assert D.candidate_seeds([7], 3)[0] == 7 and len(set(D.candidate_seeds([7, 8], 3))) == 6


def test_decode_reranking_keeps_the_decoded_candidate_closest_to_the_text(engine: Engine) -> None:
    import torch.nn.functional as F

    from unclip.engine import diffusion as D

    seeds, native, hook = [3, 4, 5], engine.c.native_size, lambda: None
    text = engine._text(["a red apple"]).repeat(len(seeds))
    embeds = engine._prior_for(text, seeds, engine.prior_guidance, 3, hook)
    negative = engine._zero_embed().expand(len(seeds), -1)

    def decode(k: int, idx: slice = slice(None)) -> torch.Tensor:
        engine.decode_candidates = k
        try:
            return engine._decode(embeds[idx], negative[idx], seeds[idx], native, engine.guidance, 3, "dpm++",
                                  hook, text=text.embeds[idx])  # fmt: skip
        finally:
            engine.decode_candidates = type(engine).decode_candidates

    single, ranked, alone = decode(1), decode(4), decode(4, slice(1, 2))
    t = F.normalize(text.embeds.float(), dim=-1)
    cos = lambda x: (F.normalize(engine._pixel_embeds(x).float(), dim=-1) * t).sum(-1)  # noqa: E731
    assert (cos(ranked) >= cos(single) - 1e-5).all()  # the first candidate is the unranked image
    assert not torch.equal(ranked, single)  # another candidate won at least once
    assert torch.allclose(ranked[1:2], alone, atol=1e-4)  # each output depends on its own seed only
    assert D.most_like_text(torch.eye(3).repeat(2, 1), torch.eye(3)[[2, 0]], 3).tolist() == [2, 3]
    engine.decode_candidates = 2
    try:  # through the cascade to the requested size
        assert [im.size for im in engine.generate("a cat", n=2, size=256, seed=1)] == [(256, 256)] * 2
    finally:
        engine.decode_candidates = type(engine).decode_candidates
