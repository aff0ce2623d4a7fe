"""The server on `unclip.safety`: realistic-face refusals, provenance of stored outputs, the verify endpoint,
moderation answers and a policy file that is re-read when an admin edits it."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from unclip.safety.provenance import verify

from .conftest import Server, png

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _file(name: str) -> tuple[str, bytes, str]:
    return (name, (IMAGES / name).read_bytes(), "image/png")


def test_edits_and_variations_of_real_faces_are_refused(live: Server, trusted: tuple[str, str]) -> None:
    pytest.importorskip("cv2")
    client = live.client(trusted[1])
    calls = len(live.engine.calls)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=_file("astronaut_face.png"), size="256x256")
    error = e.value.response.json()["error"]
    assert error["code"] == "content_policy_violation" and error["param"] == "image"
    assert "real person" in error["message"]
    mask = Image.new("RGBA", (256, 256), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 128, 128))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(
            image=_file("astronaut_face.png"), mask=("m.png", buf.getvalue(), "image/png"), prompt="a hat"
        )
    assert e.value.response.json()["error"]["code"] == "content_policy_violation"
    assert len(live.engine.calls) == calls  # refused before any compute
    assert httpx.get(live.url + "/v1/me", headers=H(trusted[1])).json()["credits"] == 2000  # not charged
    # photos without faces pass; admins (role in `real_face_upload`) may edit photos of people
    assert client.images.create_variation(image=_file("coffee_noface.png"), size="256x256").data
    _, admin_key = live.user("admin")
    assert live.client(admin_key).images.create_variation(image=_file("astronaut_face.png")).data


def test_outputs_carry_provenance_and_verify(live: Server, member: tuple[str, str]) -> None:
    client = live.client(member[1])
    raw = client.images.with_raw_response.generate(
        prompt="a red fox", size="256x256", response_format="b64_json", extra_body={"seed": 7}
    )
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("req_")
    data = base64.b64decode(raw.parse().data[0].b64_json)
    result = verify(data)
    assert result.from_unclip and result.metadata_valid and result.request_id_matches
    meta = result.metadata
    assert meta["model"] == "unclip-test" and meta["seed"] == "7" and meta["request_id"] == request_id
    assert meta["created"].endswith("Z") and meta["size"] == "256x256" and "prompt" not in meta

    r = httpx.post(live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("a.png", data)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from_unclip"] is True and body["watermark"] and body["metadata"]["request_id"] == request_id
    assert body["metadata_valid"] is True and body["request_id_matches"] is True

    # a JPEG copy has no metadata left, but the watermark is still found
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(jpeg, format="JPEG", quality=95)
    body = httpx.post(
        live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("a.jpg", jpeg.getvalue())}
    ).json()
    assert body["from_unclip"] is True and body["metadata"] == {} and body["watermark"]

    # an image this server did not make
    body = httpx.post(
        live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("b.png", png(256))}
    ).json()
    assert body["from_unclip"] is False and body["watermark"] is None


def test_verify_refuses_bad_input(live: Server, member: tuple[str, str]) -> None:
    def post(content: bytes) -> httpx.Response:
        return httpx.post(
            live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("x.png", content)}
        )

    r = post(b"%PDF-1.4 not an image")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image_format"
    assert r.json()["error"]["param"] == "image"
    big = io.BytesIO()
    Image.new("1", (4100, 4100)).save(big, format="PNG")
    r = post(big.getvalue())
    assert r.status_code == 400 and r.json()["error"]["code"] == "image_too_large"
    r = post(png(256)[:200])  # truncated
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    noise = io.BytesIO()  # a valid PNG of 4.5 MB: over the limit every upload has
    Image.frombytes("RGB", (1250, 1250), np.random.default_rng(0).bytes(1250 * 1250 * 3)).save(noise, "PNG")
    r = post(noise.getvalue())
    assert r.status_code == 400 and r.json()["error"]["code"] == "image_too_large" and "4 MB" in r.text
    assert httpx.post(live.url + "/v1/images/verify", files={"image": ("a.png", png(64))}).status_code == 401


def test_moderation_answers_with_every_openai_category(live: Server, member: tuple[str, str]) -> None:
    r = live.client(member[1]).moderations.create(input="something forbidden")
    result = r.results[0]
    assert result.flagged and result.categories.violence and result.category_scores.violence > 0.9
    assert result.categories.harassment is False and result.categories.sexual_minors is False
    # the model that ran, whatever name the client sent (it repeated the client's)
    from unclip.service.routers.moderations import MODEL_NAME

    asked = live.client(member[1]).moderations.create(input="a cat", model="omni-moderation-latest")
    assert r.model == asked.model == MODEL_NAME


def test_policy_file_is_reread_when_edited(tmp_path: Path) -> None:
    from unclip.service.app import build_services

    from .conftest import make_settings
    from .fakes import FakeEngine

    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: one\nclassifier: {enabled: false}\noffenders: {throttle_after: 5, suspend_after: 9}\n"
        "categories:\n  violence:\n    rules: {terms: [grenade]}\n"
    )
    sv = build_services(
        make_settings(tmp_path / "data", policy_file=str(path)), engines={"unclip-test": FakeEngine()}
    )
    try:
        assert sv.policy.check("a grenade").flagged and not sv.policy.check("a teapot").flagged
        assert sv.offenders.throttle_after == 5
        path.write_text(
            "version: two\nclassifier: {enabled: false}\noffenders: {throttle_after: 2, suspend_after: 4}\n"
            "categories:\n  violence:\n    rules: {terms: [grenade, teapot]}\n"
        )
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        assert sv.policy.check("a teapot").flagged
        assert (sv.offenders.throttle_after, sv.offenders.suspend_after) == (2, 4)
        # a broken edit is logged and the last good policy stays in force
        path.write_text("categories: [")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
        assert sv.policy.check("a teapot").flagged
    finally:
        sv.db.dispose()


def test_face_check_fails_closed(live: Server, trusted: tuple[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import unclip.service.policy as bridge

    def broken(image: Image.Image) -> bool:
        raise RuntimeError("OpenCV has no Haar cascades")

    monkeypatch.setattr(bridge, "contains_real_face", broken)
    files = {"image": _file("coffee_noface.png")}
    r = httpx.post(live.url + "/v1/images/variations", headers=H(trusted[1]), files=files)
    assert r.status_code == 503 and r.json()["error"]["code"] == "safety_check_unavailable"
    _, admin_key = live.user("admin")  # roles allowed real-face uploads are not checked
    r = httpx.post(
        live.url + "/v1/images/variations", headers=H(admin_key), files=files, data={"size": "256x256"}
    )
    assert r.status_code == 200, r.text


def test_verify_reads_what_image_readers_read(live: Server, member: tuple[str, str]) -> None:
    """Bytes after the PNG's end chunk were called truncated (edits and every image reader take the file), and
    a huge unsigned `unclip:size` overflowed the watermark's size hint into 'could not be decoded'."""
    from PIL.PngImagePlugin import PngInfo

    data = base64.b64decode(
        live.client(member[1]).images.generate(prompt="a fox", size="256x256", response_format="b64_json")
        .data[0].b64_json
    )
    r = httpx.post(live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("a.png", data + b"\r\n")})
    assert r.status_code == 200 and r.json()["from_unclip"] is True, r.text
    info = PngInfo()
    info.add_text("unclip:size", "9" * 400 + "x256")
    odd = io.BytesIO()
    Image.open(io.BytesIO(png(256))).save(odd, format="PNG", pnginfo=info)  # no mark: the hint is tried
    r = httpx.post(live.url + "/v1/images/verify", headers=H(member[1]), files={"image": ("a.png", odd.getvalue())})
    assert r.status_code == 200 and r.json()["from_unclip"] is False, r.text


def test_a_blend_is_also_checked_as_its_prompts_together(tmp_path: Path) -> None:
    """Each prompt of a blend was checked alone; what the engine draws is them together (their embeddings
    mixed), which the policy can refuse when neither alone is ("a black man" and "a monkey")."""
    from unclip.safety.policy import PolicyDecision

    from .conftest import make_settings, start_server
    from .fakes import FakePolicy

    class Together(FakePolicy):
        def check(self, text: str) -> PolicyDecision:
            bad = "apple" in text and "knife" in text
            return PolicyDecision(flagged=bad, categories={"violence": bad}, category_scores={"violence": float(bad)},
                                  category="violence" if bad else None)  # fmt: skip

    srv = start_server(make_settings(tmp_path), policy=Together())
    try:
        _, key = srv.user("member")
        blend = {"items": [{"prompt": "an apple"}, {"prompt": "a knife"}], "size": "256x256"}
        r = httpx.post(srv.url + "/v1/images/blends", json=blend, headers=H(key))
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_policy_violation", r.text
        blend["items"][1] = {"prompt": "a pear"}
        assert httpx.post(srv.url + "/v1/images/blends", json=blend, headers=H(key)).status_code == 200
        assert [c[0] for c in srv.engine.calls] == ["blend"]
    finally:
        srv.stop()
