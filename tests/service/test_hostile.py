"""Requests anyone can send that used to end in a 500: each gets an OpenAI-shaped answer and costs nothing."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from .conftest import Server, png
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


def test_moderations_cap_the_number_and_size_of_inputs(live: Server) -> None:
    from unclip.service.routers.moderations import MAX_CHARS, MAX_INPUTS

    _, key = live.user("member")
    url = live.url + "/v1/moderations"
    assert httpx.post(url, json={"input": ["a cat"] * MAX_INPUTS}, headers=H(key)).status_code == 200
    r = httpx.post(url, json={"input": ["a cat"] * (MAX_INPUTS + 1)}, headers=H(key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "array_above_max_length"
    r = httpx.post(url, json={"input": "a" * (MAX_CHARS + 1)}, headers=H(key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_a_job_that_keeps_crashing_the_server_is_failed_and_refunded(tmp_path) -> None:
    from sqlalchemy import update

    from unclip.service.db import Job
    from unclip.service.jobs import MAX_ATTEMPTS

    from .conftest import make_settings, start_server

    srv = start_server(make_settings(tmp_path))
    uid, key = srv.user("member")
    r = httpx.post(
        srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key)
    )
    assert r.status_code == 200
    before = books(srv, uid)
    with srv.sv.db.session() as s:  # as a job left by MAX_ATTEMPTS crashes mid-run would be, charged
        job = Job(user_id=uid, kind="generation", model="unclip-test", params={"prompt": "boom", "n": 1,
                  "size": "256x256"}, cost=1, status="running", attempts=MAX_ATTEMPTS)  # fmt: skip
        s.add(job)
        s.flush()
        job_id = job.id
        s.execute(update(Job).where(Job.id == job_id).values(status="running"))
    srv.stop()
    srv2 = start_server(make_settings(tmp_path))
    try:
        job = httpx.get(f"{srv2.url}/v1/jobs/{job_id}", headers=H(key)).json()
        assert job["status"] == "failed" and job["error"]["code"] == "job_crashed"
        balance, ledger = books(srv2, uid)
        assert balance == ledger == before[0] + 1  # the refund of a charge this test never made
        assert srv2.engine.calls == []
    finally:
        srv2.stop()


def test_the_database_file_is_private(live: Server) -> None:
    import stat

    url = live.sv.settings.db_url
    if not url.startswith("sqlite"):
        return  # a server database has its own access control
    assert stat.S_IMODE(os.stat(url.split("///", 1)[-1]).st_mode) == 0o600


def test_an_unexpected_500_closes_the_connection_cleanly(live: Server, monkeypatch) -> None:
    _, key = live.user("member")
    image_id, _ = _one_image(live, key)

    def broken(sha: str) -> bytes:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(live.sv.store, "get", broken)
    with httpx.Client(base_url=live.url, headers=H(key)) as client:
        r = client.get(f"/v1/images/{image_id}/content")
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        assert r.headers["connection"] == "close"
        assert client.get("/v1/me").status_code == 200  # the next request goes out on a new connection


@pytest.mark.parametrize(
    "extra,param,code",
    [
        ({"n": True}, "n", "invalid_type"),
        ({"n": "2"}, "n", "invalid_type"),
        ({"n": 1.5}, "n", "invalid_type"),
        ({"steps": 0}, "steps", "integer_below_min_value"),
        ({"steps": 201}, "steps", "integer_above_max_value"),
        ({"seed": 2**70}, "seed", "integer_above_max_value"),
        ({"seed": -1}, "seed", "integer_below_min_value"),
        ({"guidance": 99.0}, "guidance", "number_above_max_value"),
    ],
)
def test_numbers_the_contract_refuses_are_refused_before_the_charge(
    live: Server, extra: dict, param: str, code: str
) -> None:
    uid, key = live.user("member")
    before = books(live, uid)
    body = {"prompt": "x", "size": "256x256", **extra}
    r = httpx.post(live.url + "/v1/images/generations", json=body, headers=H(key))
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code)
    assert books(live, uid) == before and live.engine.calls == []


@pytest.mark.parametrize("a,b", [("NaN", "1"), ("Infinity", "1"), ("0", "0"), ("-1", "2")])
def test_blend_weights_must_be_finite_and_not_all_zero(live: Server, a: str, b: str) -> None:
    uid, key = live.user("trusted")
    before = books(live, uid)
    items = f'[{{"prompt": "a cat", "weight": {a}}}, {{"prompt": "a dog", "weight": {b}}}]'
    r = httpx.post(
        live.url + "/v1/images/blends",
        content=f'{{"items": {items}, "size": "256x256"}}'.encode(),
        headers={**H(key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert books(live, uid) == before and live.engine.calls == []


def _chunks(data: bytes, size: int = 1 << 16):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(tmp_path, kind: str) -> None:
    from .conftest import make_settings, start_server

    srv = start_server(make_settings(tmp_path, max_request_bytes=1 << 20))
    try:
        uid, key = srv.user("member")
        before = books(srv, uid)
        big = "u" * (3 << 20)
        if kind == "json":
            body = json.dumps({"prompt": "x", "size": "256x256", "user": big}).encode()
            ctype = "application/json"
        else:
            boundary = "b0undary"
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="user"\r\n\r\n{big}\r\n--{boundary}--\r\n'
            ).encode()
            ctype = f"multipart/form-data; boundary={boundary}"
        r = httpx.post(
            srv.url + "/v1/images/" + ("generations" if kind == "json" else "variations"),
            content=_chunks(body),  # a generator: sent chunked, without Content-Length
            headers={**H(key), "Content-Type": ctype},
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert r.headers["x-request-id"].startswith("req_")  # answered outside the routes: still carries one
        assert books(srv, uid) == before
        with srv.sv.db.session() as s:
            from sqlalchemy import func, select

            from unclip.service.db import Job

            assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert httpx.get(srv.url + "/v1/me", headers=H(key)).status_code == 200  # the server still answers
    finally:
        srv.stop()


def test_a_form_field_given_twice_is_refused_before_any_charge(live: Server) -> None:
    uid, key = live.user("member")
    before = books(live, uid)
    for field, values in (("n", ["1", "2"]), ("size", ["256x256", "1024x1024"]), ("user", ["a", "a"])):
        r = httpx.post(
            live.url + "/v1/images/variations",
            files={"image": ("a.png", png(64), "image/png")},
            data={field: values},
            headers=H(key),
        )
        assert r.status_code == 400, (field, r.text)
        assert r.json()["error"]["param"] == field and r.json()["error"]["code"] == "duplicate_parameter"
    assert books(live, uid) == before and not live.engine.calls


def test_free_text_fields_are_capped(live: Server) -> None:
    _, key = live.user("member")
    for field, limit in (("user", 256), ("model", 200)):
        body = {"prompt": "x", "size": "256x256", field: "a" * (limit + 1)}
        r = httpx.post(live.url + "/v1/images/generations", json=body, headers=H(key))
        assert r.status_code == 400 and r.json()["error"]["param"] == field
        assert r.json()["error"]["code"] == "string_above_max_length"
        r = httpx.post(  # upscales read `user` too (they used to drop it unread)
            live.url + "/v1/images/upscales",
            files={"image": ("a.png", png(64), "image/png")},
            data={field: "a" * (limit + 1)},
            headers=H(key),
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text


def test_a_client_that_goes_away_has_its_job_cancelled_and_refunded(live: Server) -> None:
    import threading
    import time

    uid, key = live.user("member")
    live.engine.gate = threading.Event()  # the job would wait forever
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            live.url + "/v1/images/generations",
            json={"prompt": "x", "size": "256x256"},
            headers=H(key),
            timeout=1.0,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        jobs = httpx.get(live.url + "/v1/jobs", headers=H(key)).json()["data"]
        if jobs and jobs[0]["status"] == "cancelled":
            break
        time.sleep(0.1)
    assert jobs[0]["status"] == "cancelled"
    balance, ledger = books(live, uid)
    assert (
        balance == ledger
        and [j["cost"] for j in jobs] == [1]
        and balance == live.sv.settings.credit_grants["member"]
    )
    live.engine.gate = None


def test_rate_limit_headers_on_answers_and_on_the_429(tmp_path) -> None:
    from .conftest import make_settings, start_server

    srv = start_server(make_settings(tmp_path, rate_limits={"member": 2, "trusted": 100, "admin": 100}))
    try:
        _, key = srv.user("member")
        seen = []
        for _ in range(3):
            r = httpx.post(
                srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key)
            )
            seen.append((r.status_code, r.headers.get("x-ratelimit-remaining-requests")))
            assert r.headers["x-ratelimit-limit-requests"] == "2"
            assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert seen == [(200, "1"), (200, "0"), (429, "0")]
    finally:
        srv.stop()


def test_the_schema_documents_errors_and_the_bearer_scheme(live: Server) -> None:
    schema = httpx.get(live.url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    op = schema["paths"]["/v1/images/generations"]["post"]
    assert op["security"] == [{"ApiKeyAuth": []}]
    assert {"400", "401", "429", "503"} <= set(op["responses"]) and "422" not in op["responses"]
    assert "security" not in schema["paths"]["/v1/signup"]["post"]
    assert "security" not in schema["paths"]["/v1/session"]["post"]  # signs in with the key in its body
    assert schema["paths"]["/v1/session"]["delete"]["security"] == [{"ApiKeyAuth": []}]
    prompt = schema["components"]["schemas"]["GenerationRequest"]["properties"]["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (1, 1000)


def test_verify_refuses_a_png_cut_before_its_end(live: Server) -> None:
    import io

    from PIL import Image

    _, key = live.user("member")
    buf = io.BytesIO()
    Image.new("RGB", (1000, 1000), (200, 10, 10)).save(buf, "PNG")
    data = buf.getvalue()[:-12]  # every pixel there, the IEND chunk gone
    r = httpx.post(
        live.url + "/v1/images/verify", files={"image": ("a.png", data, "image/png")}, headers=H(key)
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"


def test_an_opaque_mask_or_image_is_refused_before_the_charge(live: Server) -> None:
    from .conftest import png

    uid, key = live.user("trusted")
    before = books(live, uid)
    opaque = png(64, transparent=False)
    url = live.url + "/v1/images/edits"
    form = {"prompt": "x", "size": "256x256"}
    r = httpx.post(url, headers=H(key), data=form, files={"image": ("a.png", opaque, "image/png")})
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        400,
        "invalid_image_format",
        "image",
    )
    assert "no transparent pixels" in r.json()["error"]["message"]
    files = {"image": ("a.png", opaque, "image/png"), "mask": ("m.png", opaque, "image/png")}
    r = httpx.post(url, headers=H(key), data=form, files=files)
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        400,
        "invalid_mask",
        "mask",
    )
    assert books(live, uid) == before and live.engine.calls == []


def test_an_upscale_too_large_is_refused_before_the_charge(live: Server) -> None:
    from .conftest import png

    uid, key = live.user("trusted")
    before = books(live, uid)
    r = httpx.post(
        live.url + "/v1/images/upscales", headers=H(key), files={"image": ("a.png", png(512), "image/png")}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_image_size")
    assert books(live, uid) == before and live.engine.calls == []


def test_the_server_signs_with_its_own_provenance_key(live: Server, monkeypatch) -> None:
    import base64
    import stat

    from typer.testing import CliRunner

    from unclip.cli import app
    from unclip.safety import provenance

    monkeypatch.delenv("UNCLIP_PROVENANCE_KEY", raising=False)
    key_file = live.sv.settings.data_dir / "provenance.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and len(key_file.read_bytes().strip()) == 64
    _, key = live.user("member")
    r = httpx.post(
        live.url + "/v1/images/generations",
        json={"prompt": "x", "size": "256x256", "response_format": "b64_json"},
        headers=H(key),
    )
    png_path = live.sv.settings.data_dir / "out.png"
    png_path.write_bytes(base64.b64decode(r.json()["data"][0]["b64_json"]))
    assert provenance.verify(png_path.read_bytes()).metadata_valid
    provenance.use_key(None)  # the built-in key that anyone has: the signature does not check out
    try:
        assert not provenance.verify(png_path.read_bytes()).metadata_valid
        runner = CliRunner()
        args = ["verify", str(png_path), "--json", "--data-dir", str(live.sv.settings.data_dir)]
        assert json.loads(runner.invoke(app, args).output)["metadata_valid"] is True
    finally:
        provenance.use_key(key_file.read_bytes().strip())


def test_a_refused_upload_leaves_nothing_on_disk(tmp_path) -> None:
    """Out of credits (429) or an outpaint the engine would refuse (400): the upload is not stored (a user
    without credits could fill the disk 4 MB at a time)."""
    from .conftest import make_settings, png, start_server

    srv = start_server(make_settings(tmp_path, credit_grants={"trusted": 3, "admin": 100}))
    try:
        _, key = srv.user("trusted")
        stored = lambda: sorted(p.name for p in srv.sv.store.root.rglob("*") if p.is_file())  # noqa: E731
        before = stored()
        r = httpx.post(
            srv.url + "/v1/images/variations",
            files={"image": ("a.png", png(512, "RGBA"), "image/png")},
            data={"size": "1024x1024"},
            headers=H(key),
        )
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        r = httpx.post(
            srv.url + "/v1/images/outpaints",
            files={"image": ("a.png", png(16, "RGBA"), "image/png")},
            data={"prompt": "more", "left": "1"},
            headers=H(key),
        )
        assert r.status_code == 400 and "at least 64 px" in r.json()["error"]["message"]
        assert stored() == before
        r = httpx.post(
            srv.url + "/v1/images/variations",
            files={"image": ("a.png", png(64, "RGBA"), "image/png")},
            data={"size": "256x256"},
            headers=H(key),
        )
        assert r.status_code == 200 and len(stored()) == len(before) + 2  # the upload and the result
    finally:
        srv.stop()


def _raw(live: Server, key: str, path: str, body: bytes) -> httpx.Response:
    return httpx.post(live.url + path, content=body, headers={**H(key), "Content-Type": "application/json"})


def test_text_that_cannot_be_stored_or_echoed_is_refused_before_the_charge(live: Server) -> None:
    """NUL characters (PostgreSQL refuses them) and lone surrogates (no UTF-8 form), in JSON bodies, form
    fields and URLs: 400 in OpenAI's shape, never a 500, never a charge or an engine run."""
    uid, key = live.user("trusted")
    before = books(live, uid)
    for path, body in [
        ("/v1/images/generations", rb'{"prompt": "a\u0000cat", "size": "256x256"}'),
        ("/v1/images/generations", rb'{"prompt": "a cat", "size": "\ud800"}'),
        ("/v1/images/generations", rb'{"prompt": "a cat", "model": "\ud800x"}'),
        ("/v1/images/generations", rb'{"prompt": "a cat", "negative_prompt": "a\u0000"}'),
        ("/v1/images/blends", rb'{"items": [{"prompt": "a cat"}, {"image_id": "\ud800"}], "size": "256x256"}'),
        ("/v1/moderations", rb'{"input": "x", "model": "\udfff"}'),
        ("/v1/moderations", rb'{"input": ["x", "a\u0000b"]}'),
    ]:
        r = _raw(live, key, path, body)
        assert r.status_code == 400, (path, body, r.status_code, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(
        live.url + "/v1/images/variations",
        files={"image": ("a.png", png(64), "image/png")},
        data={"user": "a\x00b"},
        headers=H(key),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "user"
    for url in ["/v1/images/img%00x", "/v1/jobs/job%00x", "/v1/images?after=a%00b", "/v1/jobs?status=a%00b"]:
        r = httpx.get(live.url + url, headers=H(key))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_url", url
        assert r.headers["x-request-id"].startswith("req_")
    assert books(live, uid) == before and not live.engine.calls


def test_report_reasons_and_key_names_must_be_text(live: Server) -> None:
    _, key = live.user("member")
    _, admin = live.user("admin")
    live.client(key).images.generate(prompt="x", size="256x256")
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    r = _raw(live, key, f"/v1/images/{image_id}/report", rb'{"reason": "\ud800"}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "reason"
    uid, _ = live.user("member")
    r = _raw(live, admin, f"/v1/admin/users/{uid}/keys", rb'{"name": "k\u0000"}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"


def test_form_integers_are_plain_digits_and_content_types_any_case(live: Server) -> None:
    uid, key = live.user("trusted")
    before = books(live, uid)
    for n in ["1_0", "\u0663", "2.0", " "]:
        r = httpx.post(
            live.url + "/v1/images/variations",
            files={"image": ("a.png", png(64), "image/png")},
            data={"n": n, "size": "256x256"},
            headers=H(key),
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "n", (n, r.text)
    assert books(live, uid) == before
    boundary = "b0undary"
    image = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    size = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="size"\r\n\r\n256x256\r\n--{boundary}--\r\n'
    body = (image + "Content-Type: image/png\r\n\r\n").encode() + png(64) + size.encode()
    r = httpx.post(
        live.url + "/v1/images/variations",
        content=body,
        headers={**H(key), "Content-Type": f"Multipart/Form-Data; boundary={boundary}"},
    )
    assert r.status_code == 200, r.text


def test_admin_numbers_are_bounded_and_bodies_required(live: Server) -> None:
    uid, key = live.user("member")
    _, admin = live.user("admin")
    r = httpx.patch(f"{live.url}/v1/admin/users/{uid}", json={"credits_delta": 10**30}, headers=H(admin))
    assert r.status_code == 400 and r.json()["error"]["param"] == "credits_delta"
    for _ in range(3):  # near the limit: the balance stops there, and the ledger says what was added
        r = httpx.patch(f"{live.url}/v1/admin/users/{uid}", json={"credits_delta": 10**9}, headers=H(admin))
        assert r.status_code == 200
    assert books(live, uid) == (10**9, 10**9)
    r = httpx.post(f"{live.url}/v1/admin/reviews/refusal/{10**25}", json={"decision": "confirm"}, headers=H(admin))
    assert r.status_code == 400 and r.json()["error"]["param"] == "item_id"
    for path in ["/v1/images/generations", "/v1/moderations", "/v1/signup"]:
        r = httpx.post(live.url + path, headers=H(key))
        assert r.status_code == 400 and "could not parse the JSON body" in r.json()["error"]["message"], path
    r = httpx.post(live.url + "/v1/moderations", json={"input": 5}, headers=H(key))
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"


def test_long_text_errors_name_their_own_parameter(live: Server) -> None:
    _, key = live.user("trusted")
    long = "x" * 5000
    r = httpx.post(
        live.url + "/v1/images/generations",
        json={"prompt": "a cat", "negative_prompt": long, "size": "256x256"},
        headers=H(key),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "negative_prompt"
    r = httpx.post(
        live.url + "/v1/images/blends",
        json={"items": [{"prompt": "a cat"}, {"prompt": long}], "size": "256x256"},
        headers=H(key),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "items.1.prompt"
    assert "'items.1.prompt'" in r.json()["error"]["message"]


def test_form_integers_too_long_for_python_are_out_of_range_not_500(live: Server) -> None:
    uid, key = live.user("trusted")
    before = books(live, uid)
    image = {"image": ("a.png", png(64), "image/png")}
    for path, field, value, code in [
        ("/v1/images/variations", "n", "1" * 5000, "integer_above_max_value"),
        ("/v1/images/edits", "n", "-" + "9" * 30, "integer_below_min_value"),
        ("/v1/images/outpaints", "left", "9" * 5000, "integer_above_max_value"),
        ("/v1/images/edits", "steps", "9" * 5000, "integer_above_max_value"),  # unclip's options too
        ("/v1/images/variations", "seed", "-" + "9" * 30, "integer_below_min_value"),
    ]:
        data = {field: value, "size": "256x256"} | ({"prompt": "x"} if "variations" not in path else {})
        r = httpx.post(live.url + path, files=image, data=data, headers=H(key))
        assert r.status_code == 400, (path, r.text)
        assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (field, code)
    assert books(live, uid) == before and not live.engine.calls


def test_text_inside_multimodal_inputs_and_keys_is_checked_too(live: Server) -> None:
    _, key = live.user("member")
    for body in [
        rb'{"input": [{"type": "text", "text": "a\ud800b"}]}',
        rb'{"input": [{"type": "text", "text": "a\u0000b"}]}',
    ]:
        r = _raw(live, key, "/v1/moderations", body)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "input"), r.text
    r = _raw(live, key, "/v1/images/generations", rb'{"prompt": "a cat", "\ud800": 1}')
    assert r.status_code == 400 and "None" not in r.json()["error"]["message"], r.text


def test_options_at_their_default_value_but_of_another_type_are_refused(live: Server) -> None:
    _, key = live.user("member")
    for extra in ['"stream": 0', '"output_compression": 100.0', '"stream": false']:
        r = _raw(live, key, "/v1/images/generations", f'{{"prompt": "a cat", "size": "256x256", {extra}}}'.encode())
        assert r.status_code == (200 if extra.endswith("false") else 400), (extra, r.text)


def test_the_engine_gets_the_upload_as_the_service_read_it(live: Server, monkeypatch) -> None:
    """A greyscale mask is read as alpha, a 16-bit image as 8 bits, an RGB colour key as transparency: the
    engine must be handed those readings (not the raw upload it would refuse or misread) after the charge."""
    import io

    from PIL import Image

    from unclip.engine.images import flatten, repaint_mask

    seen: list[tuple[tuple[int, int, int], float]] = []
    edit = live.engine.edit

    def reading_edit(image, prompt, mask=None, **kw):  # type: ignore[no-untyped-def]
        seen.append((flatten(image).getpixel((48, 48)), float(repaint_mask(image, mask).mean())))
        return edit(image, prompt, mask=mask, **kw)

    monkeypatch.setattr(live.engine, "edit", reading_edit)

    def enc(img: Image.Image, **kw: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG", **kw)
        return buf.getvalue()

    grey_mask = Image.new("L", (64, 64), 255)
    grey_mask.paste(0, (0, 0, 32, 32))  # black: edit
    keyed = Image.new("RGB", (64, 64), (9, 9, 9))
    keyed.paste((1, 2, 3), (0, 0, 32, 32))
    grey_keyed = Image.new("L", (64, 64), 200)
    grey_keyed.paste(0, (0, 0, 32, 32))
    cases = [
        ({"image": png(64, mode="RGB"), "mask": enc(grey_mask)}, (200, 10, 10)),
        ({"image": enc(Image.new("I;16", (64, 64), 30000)), "mask": enc(grey_mask)}, (117, 117, 117)),
        ({"image": enc(keyed, transparency=(1, 2, 3))}, (9, 9, 9)),
        ({"image": enc(grey_keyed, transparency=0)}, (200, 200, 200)),
    ]
    _, key = live.user("trusted")
    for files, pixel in cases:
        r = httpx.post(
            live.url + "/v1/images/edits",
            files={k: (f"{k}.png", v, "image/png") for k, v in files.items()},
            data={"prompt": "x", "size": "256x256"},
            headers=H(key),
        )
        assert r.status_code == 200, r.text
        assert seen[-1] == (pixel, 0.25)


def test_an_outpaint_with_two_images_or_several_outputs_is_refused_not_cut_short(live: Server) -> None:
    uid, key = live.user("trusted")
    live.client(key).images.generate(prompt="seed image", size="256x256")
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    before = books(live, uid)
    upload = {"image": ("a.png", png(64), "image/png")}
    for path, data in [
        ("/v1/images/outpaints", {"image_id": image_id, "prompt": "more", "top": "32"}),
        ("/v1/images/upscales", {"image_id": image_id}),
        ("/v1/images/outpaints", {"prompt": "more", "top": "32", "n": "3"}),
    ]:
        r = httpx.post(live.url + path, files=upload, data=data, headers=H(key))
        assert r.status_code == 400, (path, data, r.text)
        assert r.json()["error"]["param"] == ("n" if "n" in data else "image_id")
    assert books(live, uid) == before


def test_answers_carry_browser_security_headers(live: Server) -> None:
    """The signed-in app could be framed by a page on a sibling origin (its SameSite cookie goes along):
    clickjacking of the admin's one-click actions. Nothing is sniffed, no referrer leaves the origin."""
    _, key = live.user("member")
    for path in ("/", "/app.js", "/v1/models", "/docs", "/openapi.json", "/v1/session"):
        r = httpx.get(live.url + path, headers=H(key))
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"
    app_policy = httpx.get(live.url + "/").headers["content-security-policy"]
    assert "default-src 'self'" in app_policy and "unsafe-inline" not in app_policy
    assert httpx.get(live.url + "/v1/session", headers=H(key)).headers["cache-control"] == "no-store"
    assert httpx.get(live.url + "/docs-assets/swagger-ui.css").status_code == 200
    assert httpx.get(live.url + "/docs-assets/index.html").status_code == 404  # the bundle's stock page


def test_edits_and_blends_the_engine_would_refuse_are_refused_before_the_charge(live: Server) -> None:
    """The engine repaints where alpha is below 128 and blends square images: a mask at alpha 200, or an
    outpaint's canvas as a blend item, was charged, queued, then failed (refunded) with another error."""
    import io

    from PIL import Image

    uid, key = live.user("trusted")
    live.client(key).images.generate(prompt="seed image", size="256x256")
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    wide = httpx.post(
        live.url + "/v1/images/outpaints", data={"image_id": image_id, "prompt": "more", "right": "256"}, headers=H(key)
    )
    assert wide.status_code == 200, wide.text
    wide_id = httpx.get(live.url + "/v1/images?limit=1", headers=H(key)).json()["data"][0]["id"]
    before = books(live, uid)
    calls = len(live.engine.calls)
    faint = Image.new("RGBA", (64, 64), (200, 10, 10, 255))
    faint.paste((0, 0, 0, 200), (0, 0, 32, 32))  # "transparent" at 200: the engine would repaint nothing
    buf = io.BytesIO()
    faint.save(buf, format="PNG")
    for files, param, code in [
        ({"image": ("a.png", png(64, transparent=False), "image/png"), "mask": ("m.png", buf.getvalue(), "image/png")},
         "mask", "invalid_mask"),
        ({"image": ("a.png", buf.getvalue(), "image/png")}, "image", "invalid_image_format"),
    ]:  # fmt: skip
        r = httpx.post(live.url + "/v1/images/edits", files=files, data={"prompt": "x"}, headers=H(key))
        assert (r.status_code, r.json()["error"]["param"], r.json()["error"]["code"]) == (400, param, code), r.text
    r = httpx.post(
        live.url + "/v1/images/blends",
        json={"items": [{"prompt": "a cat"}, {"image_id": wide_id}], "size": "256x256"},
        headers=H(key),
    )
    assert (r.status_code, r.json()["error"]["param"]) == (400, "items.1.image_id"), r.text
    for field, value in [("steps", "1_0"), ("seed", "\u0663"), ("guidance", "1_5"), ("guidance", "nan")]:
        r = httpx.post(
            live.url + "/v1/images/variations",
            files={"image": ("a.png", png(64), "image/png")},
            data={field: value, "size": "256x256"},
            headers=H(key),
        )
        assert (r.status_code, r.json()["error"]["param"]) == (400, field), (field, value, r.text)
    assert books(live, uid) == before and len(live.engine.calls) == calls


def test_an_upscale_the_models_upsamplers_cannot_do_is_refused_before_the_charge(tmp_path) -> None:
    from .conftest import make_settings, start_server
    from .fakes import FakeEngine

    models = tmp_path / "models"
    for part in ("prior", "decoder"):  # model folders as far as the registry looks (the fake engine loads them)
        (models / "no-upsamplers" / part).mkdir(parents=True)
        (models / "small-only" / part).mkdir(parents=True)
    (models / "small-only" / "upsampler-256").mkdir(parents=True)
    loaded = FakeEngine()
    srv = start_server(make_settings(tmp_path / "data", models_dir=str(models)), engine_loader=lambda _p: loaded)
    try:
        uid, key = srv.user("trusted")
        before = books(srv, uid)
        srv.sv.registry.get("small-only")  # a model loaded by an earlier request is judged by its folder too
        for model, size, param in [("no-upsamplers", 64, "model"), ("small-only", 128, "image")]:
            r = httpx.post(
                srv.url + "/v1/images/upscales",
                files={"image": ("a.png", png(size), "image/png")},
                data={"model": model},
                headers=H(key),
            )
            assert (r.status_code, r.json()["error"]["param"]) == (400, param), r.text
        assert books(srv, uid) == before and not srv.engine.calls and not loaded.calls
    finally:
        srv.stop()


def test_signed_urls_answer_head_and_are_cached_no_longer_than_they_are_valid(live: Server) -> None:
    _, key = live.user("member")
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    url = r.json()["data"][0]["url"]
    got = httpx.get(url)
    age = int(got.headers["cache-control"].split("max-age=")[1])
    assert got.status_code == 200 and 0 < age <= 600  # a withheld image leaves browser caches within that
    head = httpx.head(url)
    assert (head.status_code, head.headers["content-type"]) == (200, "image/png") and not head.content
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    for path in (f"/v1/images/{image_id}/content", f"/v1/images/{image_id}"):  # answered 404 "Invalid URL"
        got, head = httpx.get(live.url + path, headers=H(key)), httpx.head(live.url + path, headers=H(key))
        assert head.status_code == got.status_code == 200 and not head.content, path
        assert head.headers["content-length"] == got.headers["content-length"], path


def test_safety_identifier_is_taken_on_every_endpoint_the_sdk_sends_it(live: Server) -> None:
    uid, key = live.user("trusted")
    client = live.client(key)
    assert client.images.generate(prompt="a cat", size="256x256", safety_identifier="end-user-7").data
    with live.sv.db.session() as s:
        from sqlalchemy import select

        from unclip.service.db import Job

        job = s.scalars(select(Job).where(Job.user_id == uid)).one()
        assert job.params["safety_identifier"] == "end-user-7"
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a cat", "safety_identifier": "x" * 300},
                   headers=H(key))  # fmt: skip
    assert (r.status_code, r.json()["error"]["param"]) == (400, "safety_identifier")


def test_an_unexpected_error_still_carries_its_request_id_and_the_browser_headers(live: Server) -> None:
    _, key = live.user("member")
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    image_id = r.json()["data"][0]["url"].split("/files/")[1].split(".png")[0]
    with live.sv.db.session() as s:
        from unclip.service.db import ImageRecord

        sha = s.get(ImageRecord, image_id).sha256
    live.sv.store.get = lambda _sha: (_ for _ in ()).throw(OSError("disk gone"))  # type: ignore[method-assign]
    broken = httpx.get(live.url + f"/v1/images/{image_id}/content", headers=H(key))
    assert broken.status_code == 500 and sha
    assert broken.headers["x-request-id"].startswith("req_") and broken.headers["x-content-type-options"] == "nosniff"


def _multipart(parts: list[tuple[bytes, bytes, bytes | None]], boundary: bytes = b"XyZ") -> bytes:
    body = b""
    for name, value, filename in parts:
        body += b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name + b'"'
        body += (b'; filename="' + filename + b'"\r\nContent-Type: image/png' if filename else b"") + b"\r\n\r\n"
        body += value + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def test_a_plain_field_and_then_its_bracketed_form_is_a_duplicate_not_a_500(live: Server) -> None:
    _, key = live.user("trusted")
    for path, extra in (("/v1/images/edits", {"prompt": "x"}), ("/v1/images/variations", {})):
        r = httpx.post(
            live.url + path,
            headers=H(key),
            data={**extra, "quality": "auto", "quality[x]": "1"},
            files={"image": ("a.png", png(64), "image/png")},
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "quality", r.text
        assert r.json()["error"]["code"] == "duplicate_parameter"
    two = [("image", ("a.png", png(64), "image/png")), ("image", ("b.png", png(64), "image/png"))]
    r = httpx.post(live.url + "/v1/images/variations", headers=H(key), files=two)
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == ("image", "duplicate_parameter")
    assert not live.engine.calls


def test_a_multipart_body_cut_off_before_its_closing_boundary_is_refused(live: Server) -> None:
    _, key = live.user("trusted")
    body = _multipart([(b"image", png(64), b"a.png"), (b"prompt", b"hello", None), (b"size", b"256x256", None),
                       (b"n", b"3", None)])  # fmt: skip
    cut = body[: body.index(b'name="n"') + 20]  # inside the `n` part: it would have run with n=1, charged
    r = httpx.post(live.url + "/v1/images/edits", content=cut,
                   headers={**H(key), "content-type": "multipart/form-data; boundary=XyZ"})  # fmt: skip
    assert r.status_code == 400 and "cut off" in r.json()["error"]["message"]
    assert not live.engine.calls


def test_form_text_that_is_not_utf8_is_refused_not_read_as_latin1(live: Server) -> None:
    _, key = live.user("trusted")
    for prompt in (b"a \xed\xa0\x80 cat", b"caf\xe9 \xff"):
        body = _multipart([(b"image", png(64), b"a.png"), (b"prompt", prompt, None), (b"size", b"256x256", None)])
        r = httpx.post(live.url + "/v1/images/edits", content=body,
                       headers={**H(key), "content-type": "multipart/form-data; boundary=XyZ"})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    ok = _multipart([(b"image", png(64), b"a.png"), (b"prompt", "café ☕".encode(), None), (b"size", b"256x256", None)])
    r = httpx.post(live.url + "/v1/images/edits", content=ok,
                   headers={**H(key), "content-type": "multipart/form-data; boundary=XyZ"})  # fmt: skip
    assert r.status_code == 200 and live.engine.calls[-1][1]["prompt"] == "café ☕", r.text


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=XyZ", "application/x-www-form-urlencoded"])
def test_the_form_reader_marks_text_that_is_not_utf8(ctype: str) -> None:
    import asyncio

    from starlette.requests import Request

    from unclip.service.forms import NotText, read_form

    if ctype.startswith("multipart"):
        body = _multipart([(b"a", b"caf\xc3\xa9", None), (b"b", b"caf\xe9", None)])
    else:
        body = b"a=caf%C3%A9&b=caf%E9"

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", ctype.encode())]}
    form = asyncio.run(read_form(Request(scope, receive), max_part_size=1 << 20))
    assert form["a"] == "café" and form["b"] == NotText("utf-8")


def test_an_outpaint_refused_for_its_size_names_the_side_given(live: Server) -> None:
    import io

    from PIL import Image

    _, key = live.user("trusted")
    buf = io.BytesIO()
    Image.new("RGB", (64, 4000), (9, 9, 9)).save(buf, format="PNG")
    for sides, blamed in (({"top": "200"}, "top"), ({"left": "8", "bottom": "300"}, "bottom")):
        r = httpx.post(live.url + "/v1/images/outpaints", files={"image": ("a.png", buf.getvalue(), "image/png")},
                       data={"prompt": "sky", **sides}, headers=H(key))  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["param"] == blamed, r.text
    assert not live.engine.calls


def test_a_folder_that_is_not_a_model_is_not_offered_as_one(tmp_path) -> None:
    """Every folder of the models dir was offered: lost+found or a model half copied was listed, and a request
    naming one was charged, queued and failed with a 400 holding the server's paths."""
    import openai

    from .conftest import make_settings, start_server

    models = tmp_path / "models"
    (models / "lost+found").mkdir(parents=True)
    (models / "half-copied" / "prior").mkdir(parents=True)
    srv = start_server(make_settings(tmp_path / "var", models_dir=str(models)))
    try:
        uid, key = srv.user("member")
        before = books(srv, uid)
        listed = [m["id"] for m in httpx.get(srv.url + "/v1/models", headers=H(key)).json()["data"]]
        assert "lost+found" not in listed and "half-copied" not in listed
        with pytest.raises(openai.NotFoundError):
            srv.client(key).images.generate(model="lost+found", prompt="a cat", size="256x256")
        assert books(srv, uid) == before
    finally:
        srv.stop()
