"""The outpainting seam measure on canvases with known seams, and the frame order it reads them from."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unclip.engine.outpaint import paint_order, plan_canvas
from unclip.evaluation.seams import discontinuity, naive_paste


def _ramp(w: int = 64, h: int = 32) -> np.ndarray:
    """A smooth horizontal ramp with a dark stripe pattern: content everywhere, no sharp edges."""
    x = np.linspace(20, 200, w, dtype=np.float32)
    img = np.broadcast_to(x[None, :, None], (h, w, 3)).copy()
    img[:, :, 1] += 10 * np.sin(np.arange(h, dtype=np.float32) / 3)[:, None]
    return img.clip(0, 255).astype(np.uint8)


def _halves(w: int = 64, h: int = 32, at: int = 32) -> np.ndarray:
    order = np.zeros((h, w), dtype=np.int32)
    order[:, at:] = 1
    return order


def test_smooth_image_shows_no_seam_and_a_hard_cut_does() -> None:
    img = _ramp()
    order = _halves()
    smooth = discontinuity(img, order)
    assert smooth["pairs"] == 32  # one column of horizontal pairs
    assert abs(smooth["colour"] - 180 / 63) < 0.5 and smooth["gradient"] < 1.0  # the ramp's own step
    assert discontinuity(img)["pairs"] == 32 * 61 + 64 * 29
    cut = img.copy()
    cut[:, 32:] = 255 - cut[:, 32:]  # the right half painted by a frame that ignored the left
    hard = discontinuity(cut, order)
    assert hard["colour"] > 10 * smooth["colour"]
    assert hard["gradient"] > 5 * max(smooth["gradient"], 1)  # the slope flips too
    # away from the seam the cut image is as smooth as before
    assert discontinuity(cut, order, across=False)["gradient"] < 2.0


def test_white_on_white_pairs_are_not_content() -> None:
    img = np.full((32, 64, 3), 255, dtype=np.uint8)
    img[:, 40:] = 0
    m = discontinuity(img, _halves(at=20))
    assert m["pairs"] == 32 and m["content_pairs"] == 0 and m["colour"] == 0
    m = discontinuity(img, _halves(at=40))
    assert m["content_pairs"] == 32 and m["content_colour"] == 255


def test_paint_order_covers_the_canvas_in_frame_order() -> None:
    start = Image.new("RGB", (256, 256), (200, 10, 10))
    plan = plan_canvas(start, 0, 0, 0, 0, (640, 384), frame=256, overlap=0.5)
    order = paint_order(plan)
    assert order.shape == (384, 640)
    assert (order[plan.origin[1] : plan.origin[1] + 256, plan.origin[0] : plan.origin[0] + 256] == -1).all()
    assert (order == -1).sum() == 256 * 256 and order.max() < len(plan.frames) and order.min() == -1
    for k, (x, y) in enumerate(plan.frames):  # a frame only paints inside its own window
        ys, xs = np.nonzero(order == k)
        if len(xs):
            assert x <= xs.min() and xs.max() < x + 256 and y <= ys.min() and ys.max() < y + 256
    tiles = [Image.new("RGB", (256, 256), c) for c in ((0, 0, 255), (0, 255, 0))]
    naive = np.asarray(naive_paste(plan, order, tiles))
    assert (naive[order == -1] == (200, 10, 10)).all()
    painted = naive[order >= 0]
    assert ((painted == (0, 0, 255)).all(-1) | (painted == (0, 255, 0)).all(-1)).all()


def test_eval_outpaint_on_a_tiny_model(tiny_model, emoji64, tmp_path) -> None:
    from unclip.engine import Engine
    from unclip.evaluation.seams import eval_outpaint

    r = eval_outpaint(Engine.load(tiny_model), emoji64, n=1, canvas=(384, 256), out_dir=tmp_path)
    assert len(r["prompts"]) == 1 and r["frames_per_canvas"] == 2
    # a 256 px start centred on 384×256: two vertical seams, 256 pairs each
    assert r["outpaint"]["pairs"] == r["naive"]["pairs"] == 512
    every_pair = 256 * 381 + 384 * 253
    assert r["outpaint"]["pairs"] + r["outpaint_interior"]["pairs"] == every_pair
    assert r["unmasked"]["pairs"] == 4 * 2 * 256 * 253
    for side in ("outpaint", "naive"):
        assert r[side]["colour_ratio"] == r[side]["colour"] / r["unmasked"]["colour"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["naive_0.png", "outpaint_0.png"]
