"""Requests anyone can send that used to end in a 500: each gets an OpenAI-shaped answer and costs nothing."""

from __future__ import annotations

import httpx

from .conftest import Server
from .test_books import books
from .test_jobs import H


def _one_image(live: Server, key: str) -> tuple[str, str]:
    """(image id, signed URL) of a fresh generation."""
    r = httpx.post(
        live.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key)
    )
    url = r.json()["data"][0]["url"]
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    return image_id, url


def test_non_ascii_signature_is_403_not_500(live: Server) -> None:
    _, key = live.user("member")
    _, url = _one_image(live, key)
    base = url.split("sig=")[0]
    r = httpx.get(base + "sig=%C3%A9%C3%A9")
    assert r.status_code == 403 and r.json()["error"]["code"] == "url_expired"


def test_missing_image_file_is_404_everywhere(live: Server) -> None:
    _, key = live.user("trusted")
    image_id, url = _one_image(live, key)
    for path in live.sv.store.root.rglob("*.png"):
        path.unlink()
    for r in (
        httpx.get(url),
        httpx.get(f"{live.url}/v1/images/{image_id}/content", headers=H(key)),
        httpx.post(live.url + "/v1/images/upscales", headers=H(key), data={"image_id": image_id}),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "image_file_missing"


def test_prompts_with_lone_surrogates_or_nothing_visible_are_refused_before_the_charge(live: Server) -> None:
    uid, key = live.user("member")
    before = books(live, uid)
    for body in (
        '{"prompt": "a \\ud800 cat", "size": "256x256"}',
        '{"prompt": "\\u200b\\u200d\\ufeff", "size": "256x256"}',
    ):
        r = httpx.post(
            live.url + "/v1/images/generations",
            content=body.encode(),
            headers={**H(key), "Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "prompt"
    assert books(live, uid) == before
