"""Test doubles injected into `create_app` (never used by production code)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from PIL import Image

from unclip.safety.policy import PolicyDecision
from unclip.service.engines import Cancelled, InvalidInput


def _color(text: str) -> tuple[int, int, int]:
    d = hashlib.sha256(text.encode()).digest()
    return d[0], d[1], d[2]


class FakeEngine:
    """Deterministic: real PIL images of the requested size; honours progress, cancel and a delay per step."""

    name = "unclip-test"

    def __init__(self, steps: int = 4, delay: float = 0.0) -> None:
        self.steps = steps
        self.delay = delay
        self.calls: list[tuple[str, dict]] = []
        self.gate: threading.Event | None = None  # when set by a test, steps wait for it

    def _run(self, progress, cancel) -> None:  # type: ignore[no-untyped-def]
        for i in range(self.steps):
            if self.gate is not None:
                while not self.gate.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if self.delay:
                time.sleep(self.delay)
            if progress is not None:
                progress(i + 1, self.steps)

    def _images(self, key: str, n: int, size: int, seed: int | None) -> list[Image.Image]:
        images = [Image.new("RGB", (size, size), _color(f"{key}|{seed}|{i}")) for i in range(n)]
        for i, im in enumerate(images):  # as the engine does: the seed that reproduces each image
            im.info["unclip"] = {"seed": (7000 if seed is None else seed) + i}
        return images

    def generate(self, prompt, n=1, size=256, seed=None, progress=None, cancel=None, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("generate", {"prompt": prompt, "n": n, "size": size, "seed": seed, **kw}))
        if prompt == "raise-invalid":
            err = InvalidInput("the engine refused this input")
            err.param = "prompt"
            raise err
        self._run(progress, cancel)
        return self._images(prompt, n, size, seed)

    def edit(self, image, prompt, mask=None, n=1, size=None, seed=None, progress=None, cancel=None, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("edit", {"prompt": prompt, "n": n, "size": size, "mask": mask is not None}))
        self._run(progress, cancel)
        return self._images("edit" + prompt, n, size or image.width, seed)

    def vary(self, image, n=1, size=256, seed=None, progress=None, cancel=None, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("vary", {"n": n, "size": size}))
        self._run(progress, cancel)
        return self._images("vary", n, size, seed)

    def outpaint(
        self, image, prompt, left=0, right=0, top=0, bottom=0, seed=None, progress=None, cancel=None, **kw
    ):  # type: ignore[no-untyped-def]
        self.calls.append(("outpaint", {"left": left, "right": right}))
        self._run(progress, cancel)
        return Image.new("RGB", (image.width + left + right, image.height + top + bottom), _color(prompt))

    def blend(self, items, n=1, size=256, seed=None, progress=None, cancel=None, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("blend", {"items": len(items)}))
        self._run(progress, cancel)
        return self._images("blend", n, size, seed)

    def upscale(self, image, progress=None, cancel=None):  # type: ignore[no-untyped-def]
        self.calls.append(("upscale", {}))
        self._run(progress, cancel)
        return image.resize((image.width * 4, image.height * 4))


@dataclass
class Offenders:
    throttle_after: int = 2
    suspend_after: int = 3
    window_hours: float = 24.0


class FakePolicy:
    """Flags prompts containing the word 'forbidden' (category 'violence')."""

    offenders = Offenders()

    def check(self, text: str) -> PolicyDecision:
        bad = "forbidden" in text.lower()
        return PolicyDecision(
            flagged=bad,
            categories={"violence": bad, "hate": False},
            category_scores={"violence": 0.97 if bad else 0.01, "hate": 0.0},
            category="violence" if bad else None,
        )


class BatchFakeEngine(FakeEngine):
    """A FakeEngine that also runs compatible generations in one pass (as the real engine's generate_batch).
    With `gate` set by a test, the pass waits for it, reporting progress (where the runner's cancel lands)."""

    def generate_batch(self, prompts, ns, seeds, size=256, progress=None, **kw):  # type: ignore[no-untyped-def]
        self.calls.append(("generate_batch", {"prompts": list(prompts), "size": size, **kw}))
        while self.gate is not None and not self.gate.wait(0.02):
            if progress is not None:
                progress(0, self.steps)
        self._run(progress, None)
        return [self._images(p, n, size, s) for p, n, s in zip(prompts, ns, seeds, strict=True)]
