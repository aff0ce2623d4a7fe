"""The official `openai` client against a live server over a real socket."""

from __future__ import annotations

import base64
import io
import time

import httpx
from PIL import Image

from .conftest import Server, png


def test_generate_url_and_b64(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    r = client.images.generate(model="dall-e-2", prompt="a red fox", n=2, size="256x256")
    assert isinstance(r.created, int) and len(r.data) == 2
    for item in r.data:
        assert item.url and item.b64_json is None
        got = httpx.get(item.url)
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(got.content)).size == (256, 256)
    r = client.images.generate(prompt="a red fox", size="512x512", response_format="b64_json")
    img = Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json)))
    assert img.size == (512, 512) and r.data[0].url is None


def test_default_size_is_1024_and_model_by_name(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    r = client.images.generate(model="unclip-test", prompt="a boat", response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json))).size == (1024, 1024)
    assert live.engine.calls[-1][1]["size"] == 1024


def test_edit_and_variation(live: Server, trusted: tuple[str, str]) -> None:
    client = live.client(trusted[1])
    r = client.images.edit(image=("in.png", png(64), "image/png"), prompt="add a hat", n=2, size="256x256")
    assert len(r.data) == 2 and httpx.get(r.data[0].url).status_code == 200
    mask = png(64)
    r = client.images.edit(
        image=("in.png", png(64, transparent=False), "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="add a hat",
        size="256x256",
        response_format="b64_json",
    )
    assert Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json))).size == (256, 256)
    assert live.engine.calls[-1] == ("edit", {"prompt": "add a hat", "n": 1, "size": 256, "mask": True})
    r = client.images.create_variation(
        image=("in.png", png(64, mode="RGB"), "image/png"), n=3, size="256x256"
    )
    assert len(r.data) == 3


def test_models(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    ids = [m.id for m in client.models.list()]
    assert ids == ["dall-e-2", "unclip-test"]
    assert client.models.retrieve("dall-e-2").owned_by == "unclip"


def test_moderations(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    r = client.moderations.create(input=["hello there", "something forbidden"])
    assert [x.flagged for x in r.results] == [False, True]
    assert r.results[1].categories.violence is True


def test_signed_urls_expire_and_cannot_be_forged(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    url = client.images.generate(prompt="a tree", size="256x256").data[0].url
    assert url is not None
    assert httpx.get(url.replace("sig=", "sig=0")).status_code == 403
    image_id = url.split("/files/")[1].split(".png")[0]
    expires, sig = live.sv.signer.sign(image_id, now=time.time() - 3601)
    expired = f"{live.url}/v1/files/{image_id}.png?expires={expires}&sig={sig}"
    r = httpx.get(expired)
    assert r.status_code == 403 and r.json()["error"]["code"] == "url_expired"
    assert int(url.split("expires=")[1].split("&")[0]) - time.time() <= 3600


def test_openapi_and_web_app(live: Server) -> None:
    schema = httpx.get(live.url + "/openapi.json").json()
    for path in (
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/images/variations",
        "/v1/models",
        "/v1/jobs/{job_id}/events",
        "/v1/images/outpaints",
        "/v1/images/blends",
        "/v1/images/upscales",
    ):
        assert path in schema["paths"]
    page = httpx.get(live.url + "/")
    assert page.status_code == 200 and "<html" in page.text.lower() and 'rel="icon"' in page.text
    assert httpx.get(live.url + "/favicon.svg").headers["content-type"].startswith("image/svg")


def test_api_docs_work_offline(live: Server) -> None:
    """/docs loads Swagger UI from this server, not from a CDN."""
    import re

    page = httpx.get(live.url + "/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert not re.search(r"(src|href)=['\"]https?://", page.text), page.text
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        r = httpx.get(live.url + asset)
        assert r.status_code == 200 and len(r.content) > 10_000
