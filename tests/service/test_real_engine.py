"""The real Engine on the tiny random-weight model, through a live server and the official `openai` client:
every OpenAI image endpoint, provenance of each output, engine errors, progress over SSE and cancellation."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from unclip.safety.provenance import payload_for, verify
from unclip.safety.watermark import same_payload

from .conftest import Server, make_settings, start_server
from .fakes import FakePolicy

STEPS = {"steps": 2}  # decoder steps: enough to run every stage of the engine, cheap on a shared CPU


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def real(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = make_settings(
        tmp_path_factory.mktemp("real-engine"), model=str(tiny_model), request_timeout_s=300
    )
    # the real engine (create_app's loader: Engine.load on the model folder) behind the real HTTP stack
    srv = start_server(settings, policy=FakePolicy(), real_engine=True)
    yield srv
    srv.stop()


def _png(data: bytes, size: int) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size == (size, size)
    return img


def _check_provenance(srv: Server, key: str, data: bytes, request_id: str, model: str) -> None:
    """Signed metadata on every output. (The random model draws noise, too busy at 256 px for the watermark
    to be read back reliably; the edit test below reads it from an image with flat areas.)"""
    result = verify(data)
    assert result.from_unclip and result.metadata_valid
    assert result.request_id_matches in (True, None)
    meta = result.metadata
    assert meta["model"] == model and meta["request_id"] == request_id
    assert meta["seed"].isdigit() and meta["created"] and meta["job_id"]
    r = httpx.post(srv.url + "/v1/images/verify", headers=H(key), files={"image": ("x.png", data)})
    assert r.status_code == 200 and r.json()["from_unclip"] is True
    assert r.json()["metadata"]["request_id"] == request_id


def test_openai_client_on_the_real_engine(real: Server, tiny_model: Path) -> None:
    _, key = real.user("trusted")
    client = real.client(key, timeout=300)
    assert [m.id for m in client.models.list()] == ["dall-e-2", tiny_model.name]

    raw = client.images.with_raw_response.generate(
        model="dall-e-2",
        prompt="a smiling face",
        size="256x256",
        response_format="b64_json",
        extra_body={**STEPS, "seed": 11},
    )
    data = base64.b64decode(raw.parse().data[0].b64_json)
    _png(data, 256)
    _check_provenance(real, key, data, raw.headers["x-request-id"], tiny_model.name)
    assert verify(data).metadata["seed"] == "11"
    job = httpx.get(real.url + "/v1/jobs?limit=1", headers=H(key)).json()["data"][0]
    assert job["status"] == "succeeded" and job["progress"] == {"step": 15, "total": 15}  # 12 prior + 2 + upsampling

    source = Image.new("RGBA", (64, 64), (230, 180, 20, 255))
    source.paste((0, 0, 0, 0), (16, 16, 48, 48))  # the transparent region is what the engine repaints
    buf = io.BytesIO()
    source.save(buf, format="PNG")
    raw = client.images.with_raw_response.edit(
        image=("in.png", buf.getvalue(), "image/png"), prompt="a hat", size="256x256", extra_body=STEPS
    )
    url = raw.parse().data[0].url
    assert url
    data = httpx.get(url).content
    _png(data, 256)
    _check_provenance(real, key, data, raw.headers["x-request-id"], tiny_model.name)

    raw = client.images.with_raw_response.create_variation(
        image=("in.png", buf.getvalue(), "image/png"), size="256x256", response_format="b64_json",
        extra_body=STEPS,
    )  # fmt: skip
    data = base64.b64decode(raw.parse().data[0].b64_json)
    _png(data, 256)
    _check_provenance(real, key, data, raw.headers["x-request-id"], tiny_model.name)


def test_an_edit_keeps_the_pixels_outside_its_mask(real: Server, tiny_model: Path) -> None:
    """Through the API, an edit returns the input's pixels outside the mask within 2/255 (the watermark's
    bound), and only the masked square changes much."""
    import numpy as np

    _, key = real.user("trusted")
    rng = np.random.default_rng(4)
    blocks = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    source = Image.fromarray(np.kron(blocks, np.ones((32, 32, 1), dtype=np.uint8)))
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (64, 64, 192, 192))

    def png(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    r = httpx.post(
        real.url + "/v1/images/edits",
        headers=H(key),
        data={"prompt": "a hat", "size": "256x256", "response_format": "b64_json", **STEPS},
        files={"image": ("in.png", png(source), "image/png"), "mask": ("mask.png", png(mask), "image/png")},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["data"][0]["b64_json"])
    _check_provenance(real, key, data, r.headers["x-request-id"], tiny_model.name)
    diff = np.abs(np.asarray(_png(data, 256).convert("RGB")).astype(int) - np.asarray(source).astype(int))
    keep = np.ones((256, 256), dtype=bool)
    keep[64:192, 64:192] = False
    assert diff[keep].max() <= 2
    assert diff[~keep].mean() > 10
    # the watermark alone (a copy without the PNG text chunks) still names the request (a bit of the digest
    # may flip on the random model's noisy repaint: the tolerance `request_id_matches` uses)
    stripped = verify(Image.fromarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))))
    assert stripped.from_unclip and stripped.watermark
    assert same_payload(bytes.fromhex(stripped.watermark), payload_for(r.headers["x-request-id"]))


def test_values_the_engine_refuses_are_a_400_before_any_job(real: Server) -> None:
    _, key = real.user("member")
    client = real.client(key, timeout=300)
    before = httpx.get(real.url + "/v1/me", headers=H(key)).json()["credits"]
    for name, value, code in (
        ("steps", 500, "integer_above_max_value"),
        ("guidance", 99.0, "number_above_max_value"),
    ):
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(prompt="a cat", size="256x256", extra_body={name: value})
        error = e.value.response.json()["error"]
        assert error["param"] == name and error["code"] == code, error
        assert error["type"] == "invalid_request_error"
    assert httpx.get(real.url + "/v1/jobs", headers=H(key)).json()["data"] == []  # no queue place, no charge
    assert httpx.get(real.url + "/v1/me", headers=H(key)).json()["credits"] == before


def test_progress_events_then_cancel_on_the_real_engine(real: Server) -> None:
    """The engine's progress callback feeds the SSE stream; a cancel raises `Cancelled` inside the engine."""
    _, key = real.user("member")
    r = httpx.post(
        real.url + "/v1/images/generations",
        json={"prompt": "a slow cat", "size": "256x256", "steps": 200},
        headers={**H(key), "Prefer": "respond-async"},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    progress: list[dict] = []
    done = None
    cancelled = False
    with httpx.stream("GET", f"{real.url}/v1/jobs/{job_id}/events", headers=H(key), timeout=120) as resp:
        event = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if event == "done":
                    done = data
                    break
                progress.append(data)
                # past the prior (12 steps) and into the decoder: cancel mid-run
                if not cancelled and data["status"] == "running" and data["step"] > 12:
                    cancelled = True
                    c = httpx.post(f"{real.url}/v1/jobs/{job_id}/cancel", headers=H(key), timeout=60)
                    assert c.status_code == 200, c.text
    assert cancelled and done is not None
    running = [p for p in progress if p["status"] == "running" and p["step"]]
    assert running and all(p["total"] == 213 for p in running)  # 12 prior, 200 decoder steps, 1 upsampling
    steps = [p["step"] for p in running]
    assert steps == sorted(steps) and 12 < steps[-1] < 212
    assert done["status"] == "cancelled" and done["result"] is None
    assert httpx.get(real.url + "/v1/me", headers=H(key)).json()["credits"] == 200  # refunded
