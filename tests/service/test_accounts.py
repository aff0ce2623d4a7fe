"""Waitlist, approval, roles, credits, rate limits and per-user isolation, end to end over the socket."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from unclip.service import credits
from unclip.service.db import User

from .conftest import Server, make_settings, png, start_server


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_waitlist_signup_then_admin_approval(live: Server) -> None:
    _, admin_key = live.user("admin")
    r = httpx.post(live.url + "/v1/signup", json={"email": "Ada@Example.test", "name": "Ada"})
    assert r.status_code == 201
    key, user = r.json()["api_key"], r.json()["user"]
    assert user["role"] == "waitlisted" and key.startswith("sk-unclip-")
    with live.sv.db.session() as s:  # stored hashed only
        from sqlalchemy import select

        from unclip.service.db import ApiKey

        hashes = list(s.scalars(select(ApiKey.hash)))
        assert key not in hashes and all(len(h) == 64 for h in hashes)

    with pytest.raises(openai.PermissionDeniedError) as e:
        live.client(key).images.generate(prompt="x", size="256x256")
    assert e.value.response.json()["error"]["code"] == "waitlisted"
    assert httpx.post(live.url + "/v1/signup", json={"email": "ada@example.test"}).status_code == 409

    # only admins may approve
    r = httpx.post(f"{live.url}/v1/admin/users/{user['id']}/approve", json={"role": "member"}, headers=H(key))
    assert r.status_code == 403
    waiting = httpx.get(live.url + "/v1/admin/users?role=waitlisted", headers=H(admin_key)).json()["data"]
    assert [u["email"] for u in waiting] == ["ada@example.test"]
    r = httpx.post(
        f"{live.url}/v1/admin/users/{user['id']}/approve", json={"role": "member"}, headers=H(admin_key)
    )
    assert r.status_code == 200 and r.json()["role"] == "member" and r.json()["credits"] == 200
    assert live.client(key).images.generate(prompt="x", size="256x256").data


def test_role_gated_edit_of_uploads(live: Server, member: tuple[str, str], trusted: tuple[str, str]) -> None:
    mc = live.client(member[1])
    with pytest.raises(openai.PermissionDeniedError) as e:
        mc.images.edit(image=("a.png", png(64), "image/png"), prompt="a hat", size="256x256")
    assert e.value.response.json()["error"]["code"] == "insufficient_role"
    # a member may edit their own results (content-addressed: same bytes as the image we served)
    own = httpx.get(mc.images.generate(prompt="base", size="256x256").data[0].url).content
    mask = png(256)
    r = mc.images.edit(
        image=("own.png", own, "image/png"), mask=("m.png", mask, "image/png"), prompt="a hat", size="256x256"
    )
    assert r.data
    # an upscale of an upload is that upload enlarged: not one of the member's results either
    up = httpx.post(live.url + "/v1/images/upscales", headers=H(member[1]), files={"image": ("a.png", png(64))})
    assert up.status_code == 200, up.text
    big = httpx.get(up.json()["data"][0]["url"]).content
    with pytest.raises(openai.PermissionDeniedError) as e:
        mc.images.edit(image=("big.png", big, "image/png"), prompt="a hat", size="256x256")
    assert e.value.response.json()["error"]["code"] == "insufficient_role"
    # nor is an upscale of that upscale by its image_id (the id is the member's; the picture is not)
    newest = httpx.get(live.url + "/v1/images?limit=1", headers=H(member[1])).json()["data"][0]["id"]
    again = httpx.post(live.url + "/v1/images/upscales", headers=H(member[1]), data={"image_id": newest})
    assert again.status_code == 200, again.text
    bigger = httpx.get(again.json()["data"][0]["url"]).content
    with pytest.raises(openai.PermissionDeniedError) as e:
        mc.images.edit(image=("b.png", bigger, "image/png"), mask=("m.png", png(1024), "image/png"), prompt="a hat")
    assert e.value.response.json()["error"]["code"] == "insufficient_role"
    up = httpx.post(live.url + "/v1/images/upscales", headers=H(member[1]), files={"image": ("own.png", own)})
    big = httpx.get(up.json()["data"][0]["url"]).content  # while one of their own, enlarged, still is
    side = Image.open(io.BytesIO(big)).width
    r = mc.images.edit(
        image=("big.png", big, "image/png"), mask=("m.png", png(side), "image/png"), prompt="a hat", size="256x256"
    )
    assert r.data
    # and the trusted role may edit uploads
    tc = live.client(trusted[1])
    assert tc.images.edit(image=("a.png", png(64), "image/png"), prompt="a hat", size="256x256").data


def test_credits_run_out_and_failed_jobs_refund(live: Server) -> None:
    uid, key = live.user("member")
    client = live.client(key)
    with live.sv.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.credits, user.credits_period = 5, credits.period()
    client.images.generate(prompt="x", n=2, size="512x512")  # 2 x 2 credits
    me = httpx.get(live.url + "/v1/me", headers=H(key)).json()
    assert me["credits"] == 1
    with pytest.raises(openai.RateLimitError) as e:
        client.images.generate(prompt="x", n=1, size="1024x1024")
    body = e.value.response.json()["error"]
    assert body["type"] == "insufficient_quota" and body["code"] == "insufficient_quota"
    with pytest.raises(openai.BadRequestError):  # the engine refuses: credits come back
        client.images.generate(prompt="raise-invalid", size="256x256")
    assert httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"] == 1


def test_monthly_grant_tops_up(live: Server) -> None:
    uid, _ = live.user("member")
    grants = live.sv.settings.credit_grants
    with live.sv.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.credits, user.credits_period = 3, "2000-01"
        credits.ensure_grant(s, user, grants)
        assert user.credits == grants["member"] and user.credits_period == credits.period()
        user.credits = 5
        credits.ensure_grant(s, user, grants)  # same month: no second grant
        assert user.credits == 5


def test_rate_limit_per_key_429_with_retry_after(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path, rate_limits={"member": 3, "admin": 0}))
    try:
        _, key = srv.user("member")
        _, other = srv.user("member")
        client = srv.client(key)
        for _ in range(3):
            client.images.generate(prompt="x", size="256x256")
        with pytest.raises(openai.RateLimitError) as e:
            client.images.generate(prompt="x", size="256x256")
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.response.json()["error"]["code"] == "rate_limit_exceeded"
        srv.client(other).images.generate(prompt="x", size="256x256")  # per key
    finally:
        srv.stop()


def test_revoked_key_is_401(live: Server) -> None:
    _, admin_key = live.user("admin")
    uid, key = live.user("member")
    keys = httpx.get(f"{live.url}/v1/admin/users/{uid}/keys", headers=H(admin_key)).json()["data"]
    assert httpx.delete(f"{live.url}/v1/admin/keys/{keys[0]['id']}", headers=H(admin_key)).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        live.client(key).models.list()


def test_users_see_only_their_own_images_and_jobs(live: Server) -> None:
    _, a = live.user("member")
    _, b = live.user("member")
    live.client(a).images.generate(prompt="mine", size="256x256")
    hist_a = httpx.get(live.url + "/v1/images", headers=H(a)).json()["data"]
    assert len(hist_a) == 1 and hist_a[0]["prompt"] == "mine"
    assert httpx.get(live.url + "/v1/images", headers=H(b)).json()["data"] == []
    image_id = hist_a[0]["id"]
    assert httpx.get(f"{live.url}/v1/images/{image_id}", headers=H(b)).status_code == 404
    assert httpx.get(f"{live.url}/v1/images/{image_id}/content", headers=H(b)).status_code == 404
    assert httpx.get(f"{live.url}/v1/images/{image_id}/content", headers=H(a)).status_code == 200
    job_id = hist_a[0]["job_id"]
    assert httpx.get(f"{live.url}/v1/jobs/{job_id}", headers=H(b)).status_code == 404
    assert httpx.get(f"{live.url}/v1/jobs/{job_id}", headers=H(a)).json()["status"] == "succeeded"


def test_web_session_by_cookie_with_csrf(live: Server) -> None:
    """The web app's sign-in: the key goes in once, an HttpOnly SameSite=Strict cookie comes out; reading works
    with the cookie alone, changing anything also needs the session's CSRF token; sign-out and revoking the key
    end the session."""
    _, admin_key = live.user("admin")
    uid, key = live.user("member")
    web = httpx.Client(base_url=live.url)
    assert web.post("/v1/session", json={"api_key": "sk-unclip-wrong"}).status_code == 401
    r = web.post("/v1/session", json={"api_key": key})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].lower()
    assert "unclip_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert key not in r.text and "secure" not in cookie  # plain http on loopback
    csrf = r.json()["csrf_token"]
    assert web.get("/v1/session").json()["csrf_token"] == csrf
    assert web.get("/v1/me").json()["id"] == uid
    body = {"prompt": "a red apple", "n": 1, "size": "256x256"}
    refused = web.post("/v1/images/generations", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    wrong = web.post("/v1/images/generations", json=body, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    latin = web.post("/v1/images/generations", json=body, headers={"X-CSRF-Token": "caf\xe9".encode("latin-1")})
    assert latin.status_code == 403 and latin.json()["error"]["code"] == "csrf_failed"  # not a 500
    ok = web.post("/v1/images/generations", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    # another site's page cannot read the token, and the cookie alone signs nothing
    assert web.delete("/v1/session").status_code == 403
    assert web.delete("/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert web.get("/v1/me").status_code == 401
    # revoking the key the session was made from ends the session
    r = web.post("/v1/session", json={"api_key": key})
    assert web.get("/v1/me").status_code == 200
    keys = httpx.get(f"{live.url}/v1/admin/users/{uid}/keys", headers=H(admin_key)).json()["data"]
    assert httpx.delete(f"{live.url}/v1/admin/keys/{keys[0]['id']}", headers=H(admin_key)).status_code == 200
    expired = web.get("/v1/me")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session_expired"


def _patch(srv: Server, key: str, uid: str, body: dict) -> httpx.Response:
    return httpx.patch(f"{srv.url}/v1/admin/users/{uid}", json=body, headers=H(key))


def test_a_suspended_admin_has_no_admin_powers_and_the_last_admin_stays(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path))
    try:
        a, a_key = srv.user("admin")
        for change in ({"role": "member"}, {"status": "suspended"}):
            r = _patch(srv, a_key, a, change)
            assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin"), r.text
        r = httpx.post(f"{srv.url}/v1/admin/users/{a}/approve", json={"role": "member"}, headers=H(a_key))
        assert r.status_code == 409, r.text
        b, b_key = srv.user("admin")
        assert _patch(srv, b_key, a, {"status": "suspended"}).status_code == 200
        for r in (
            _patch(srv, a_key, a, {"status": "active"}),  # lifting its own suspension
            _patch(srv, a_key, b, {"status": "suspended"}),
            httpx.get(f"{srv.url}/v1/admin/users", headers=H(a_key)),
        ):
            assert (r.status_code, r.json()["error"]["code"]) == (403, "account_suspended"), r.text
        assert _patch(srv, b_key, b, {"role": "member"}).status_code == 409  # a, suspended, does not count
        assert _patch(srv, b_key, a, {"status": "active"}).status_code == 200
        assert _patch(srv, b_key, b, {"role": "member"}).status_code == 200  # a is an active admin again
    finally:
        srv.stop()


def test_credits_an_admin_adds_before_the_months_grant_come_on_top_of_it(live: Server) -> None:
    uid, _ = live.user("member")
    _, admin_key = live.user("admin")
    grant = live.sv.settings.credit_grants["member"]
    with live.sv.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.credits, user.credits_period = 0, "2000-01"  # last month's, spent
    r = _patch(live, admin_key, uid, {"credits_delta": 500})
    assert r.status_code == 200 and r.json()["credits"] == grant + 500, r.text


def test_one_address_is_one_account_however_it_is_spelt(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path))  # its own: 8 signups, under the per-address limit of 10
    try:
        for i, local in enumerate(["jose\u0301", "jos\u00e9\u200b", "\uff4aos\u00e9", "JOS\u00c9"]):
            assert httpx.post(srv.url + "/v1/signup", json={"email": f"jos\u00e9@{i}.test"}).status_code == 201
            r = httpx.post(srv.url + "/v1/signup", json={"email": f"{local}@{i}.test"})
            assert (r.status_code, r.json()["error"]["code"]) == (409, "email_taken"), (local, r.text)
    finally:
        srv.stop()


def test_the_admin_key_account_is_reserved_and_a_new_admin_key_replaces_the_old(tmp_path: Path) -> None:
    from sqlalchemy import select

    from unclip.service.app import bootstrap_admin
    from unclip.service.auth import create_key, create_user, resolve
    from unclip.service.db import Database

    srv = start_server(make_settings(tmp_path))
    try:
        r = httpx.post(srv.url + "/v1/signup", json={"email": "Admin@Localhost"})
        assert r.status_code == 409, r.text
        srv.user("waitlisted", email="admin@localhost")  # made some other way: not an admin
    finally:
        srv.stop()
    db = Database(make_settings(tmp_path).db_url)
    try:
        with pytest.raises(RuntimeError, match="not an active admin"):
            bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-first-key"))
        with db.session() as s:
            assert resolve(s, "sk-unclip-first-key") is None
            owner = s.scalar(select(User).where(User.email == "admin@localhost"))
            assert owner is not None
            owner.role = "admin"
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-first-key"))
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-second-key"))
        with db.session() as s:
            assert resolve(s, "sk-unclip-first-key") is None  # rotated out
            found = resolve(s, "sk-unclip-second-key")
            assert found is not None and found[0].role == "admin"
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-second-key"))  # a restart: the same key
        with pytest.raises(RuntimeError, match="was revoked"):  # going back would keep the second key working
            bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-first-key"))
        with db.session() as s:
            assert resolve(s, "sk-unclip-first-key") is None and resolve(s, "sk-unclip-second-key") is not None
            member = create_user(s, "someone@example.test", role="member")
            create_key(s, member, key="sk-unclip-members-key")
        with pytest.raises(RuntimeError, match="another account's"):
            bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-members-key"))
    finally:
        db.dispose()


def test_the_session_cookie_is_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path, public_url="https://images.example.test"))
    try:
        _, key = srv.user("member")
        r = httpx.post(srv.url + "/v1/session", json={"api_key": key})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower(), r.headers
        r = httpx.post(srv.url + "/v1/session", json={"api_key": key},
                       headers={"Origin": "https://images.example.test"})  # fmt: skip
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower(), r.headers
    finally:
        srv.stop()


def test_a_browser_on_plain_http_gets_a_cookie_it_keeps_when_the_public_url_is_https(tmp_path: Path) -> None:
    """Opened by its LAN address, the web app is on http: a Secure cookie would be dropped by the browser and
    sign-in would not stick."""
    srv = start_server(make_settings(tmp_path, public_url="https://images.example.test"))
    try:
        _, key = srv.user("member")
        web = httpx.Client(base_url=srv.url, headers={"Origin": srv.url})
        r = web.post("/v1/session", json={"api_key": key})
        assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower(), r.headers
        assert web.get("/v1/session").status_code == 200
    finally:
        srv.stop()


def test_signing_out_with_a_key_and_the_cookie_ends_the_cookies_session(live: Server) -> None:
    _, key = live.user("member")
    web = httpx.Client(base_url=live.url)
    assert web.post("/v1/session", json={"api_key": key}).status_code == 200
    cookie = web.cookies.get("unclip_session")
    assert web.delete("/v1/session", headers=H(key)).status_code == 200
    stolen = httpx.get(live.url + "/v1/me", cookies={"unclip_session": cookie})
    assert stolen.status_code == 401, stolen.text


def test_an_address_is_checked_as_it_will_be_stored(live: Server) -> None:
    """Invisible characters are dropped before the check: '\\u200b@\\u200b' is '@', not an address."""
    _, admin = live.user("admin")
    for email in ["\u200b@\u200b", "a@", "@example.test", "a b@example.test", "\u200bnobody"]:
        r = httpx.post(live.url + "/v1/signup", json={"email": email})
        assert (r.status_code, r.json()["error"]["param"]) == (400, "email"), (email, r.text)
        r = httpx.post(live.url + "/v1/admin/users", json={"email": email}, headers=H(admin))
        assert (r.status_code, r.json()["error"]["param"]) == (400, "email"), (email, r.text)
    assert httpx.post(live.url + "/v1/signup", json={"email": "ok\u200b@example.test"}).status_code == 201
