"""Content policy before compute, the audit table, repeat-offender throttling then suspension."""

from __future__ import annotations

import httpx
import openai
import pytest
from typer.testing import CliRunner

from unclip.service import credits
from unclip.service.db import User

from .conftest import Server
from .test_jobs import wait_status


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_refusal_audit_throttle_then_suspend(live: Server) -> None:
    # the fake policy's thresholds: throttle after 2 offences, suspend after 3 (24 h window)
    uid, key = live.user("member")
    client = live.client(key)
    calls = len(live.engine.calls)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="something forbidden", size="256x256")
    assert e.value.response.json()["error"]["code"] == "content_policy_violation"
    assert len(live.engine.calls) == calls  # refused before any compute
    assert httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"] == 200  # nothing charged

    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt="forbidden 2")
    # second offence: now throttled to one request per cooldown
    client.images.generate(prompt="fine", size="256x256")
    with pytest.raises(openai.RateLimitError) as e:
        client.images.generate(prompt="fine again", size="256x256")
    assert e.value.response.headers["retry-after"]
    live.sv.limiter._cooldowns.clear()
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt="forbidden 3")
    live.sv.limiter._cooldowns.clear()
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.images.generate(prompt="fine", size="256x256")
    assert e.value.response.json()["error"]["code"] == "account_suspended"

    _, admin_key = live.user("admin")
    audit = httpx.get(live.url + "/v1/admin/audit", params={"user_id": uid}, headers=H(admin_key)).json()[
        "data"
    ]
    assert [a["action"] for a in audit] == ["suspended", "throttled", "refused"]
    assert all(
        a["category"] == "violence" and a["score"] > 0.9 and len(a["prompt_hash"]) == 64 for a in audit
    )
    assert "forbidden" not in str(audit)
    assert httpx.get(live.url + "/v1/admin/audit", headers=H(key)).status_code == 403

    from unclip.cli import app

    out = CliRunner().invoke(app, ["admin", "audit", "--db", live.sv.settings.db_url])
    assert out.exit_code == 0, out.output
    assert out.output.count("violence") == 3 and "suspended" in out.output
    # an admin lifts it
    r = httpx.patch(f"{live.url}/v1/admin/users/{uid}", json={"status": "active"}, headers=H(admin_key))
    assert r.json()["status"] == "active"


def test_blend_prompts_are_checked(live: Server, member: tuple[str, str]) -> None:
    r = httpx.post(
        live.url + "/v1/images/blends",
        headers=H(member[1]),
        json={"items": [{"prompt": "a cat"}, {"prompt": "forbidden dog"}], "size": "256x256"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_policy_violation"


def test_real_content_policy_through_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("unclip.safety.policy")
    from unclip.service.policy import load_policy

    from .conftest import make_settings, start_server

    srv = start_server(make_settings(tmp_path), policy=load_policy())
    try:
        uid, key = srv.user("member")
        client = srv.client(key)
        r = client.moderations.create(input="a graphic photo of a beheading with gore everywhere")
        assert r.results[0].flagged and r.results[0].categories.violence
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(prompt="how to make a pipe bomb", size="256x256")
        assert e.value.response.json()["error"]["code"] == "content_policy_violation"
        assert client.images.generate(prompt="an otter", size="256x256").data
        with srv.sv.db.session() as s:
            from sqlalchemy import select

            from unclip.service.db import AuditEvent

            events = list(s.scalars(select(AuditEvent).where(AuditEvent.user_id == uid)))
        assert [ev.category for ev in events] == ["illicit"]
    finally:
        srv.stop()


def test_a_throttled_users_typo_does_not_use_up_the_minute_and_the_waitlist_is_not_a_rate_limit(
    live: Server,
) -> None:
    _, key = live.user("member")
    for prompt in ("forbidden 1", "forbidden 2"):  # throttled from now on: one request per cooldown
        r = httpx.post(live.url + "/v1/images/generations", json={"prompt": prompt}, headers=H(key))
        assert r.status_code == 400
    url = live.url + "/v1/images/generations"
    typo = httpx.post(url, json={"prompt": "a cat", "size": "265x265"}, headers=H(key))
    assert (typo.status_code, typo.json()["error"]["param"]) == (400, "size")
    ok = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert ok.status_code == 200, ok.text  # the typo took no turn
    again = httpx.post(url, json={"prompt": "a dog", "size": "256x256"}, headers=H(key))
    assert again.status_code == 429 and again.headers["retry-after"]

    _, waiting = live.user("waitlisted")
    tries = live.sv.settings.rate_limits["waitlisted"] + 3
    answers = {
        httpx.post(live.url + "/v1/images/generations", json={"prompt": "x"}, headers=H(waiting)).status_code
        for _ in range(tries)
    }
    assert answers == {403}  # told to wait for approval, never to retry in a few seconds


def test_a_throttled_request_that_is_not_taken_leaves_the_turn(live: Server) -> None:
    """Out of credits (or a full queue), nothing ran: topped up, the throttled user may try again at once."""
    uid, key = live.user("member")
    url = live.url + "/v1/images/generations"
    for prompt in ("forbidden 1", "forbidden 2"):  # throttled from now on: one request per cooldown
        assert httpx.post(url, json={"prompt": prompt}, headers=H(key)).status_code == 400
    with live.sv.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.credits, user.credits_period = 0, credits.period()
    broke = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert (broke.status_code, broke.json()["error"]["code"]) == (429, "insufficient_quota"), broke.text
    with live.sv.db.session() as s:
        credits.adjust(s, s.get(User, uid), 10)
    ok = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert ok.status_code == 200, ok.text
    again = httpx.post(url, json={"prompt": "a dog", "size": "256x256"}, headers=H(key))
    assert again.status_code == 429 and again.headers["retry-after"]


def test_a_throttled_users_malformed_outpaint_takes_no_turn(live: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pricing an outpaint finds sides it cannot paint (400) after the other checks: that is a typo too."""
    from unclip.service.errors import invalid

    _, key = live.user("member")
    url = live.url + "/v1/images/generations"
    for prompt in ("forbidden 1", "forbidden 2"):
        assert httpx.post(url, json={"prompt": prompt}, headers=H(key)).status_code == 400

    def unpaintable(sub: object) -> int:
        raise invalid("Invalid outpaint: the canvas is too large.", "left")

    monkeypatch.setattr(live.sv.images, "cost", unpaintable)
    bad = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "left", bad.text
    monkeypatch.undo()
    ok = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("wait", [True, False])
def test_a_throttled_request_the_engine_refuses_as_malformed_takes_no_turn(live: Server, wait: bool) -> None:
    """The engine's own checks come after the charge: its 400 (charged, then refunded) is a typo too, whether
    the request waited for it or polled the job; a request that ran keeps its turn."""
    _, key = live.user("member")
    url = live.url + "/v1/images/generations"
    for prompt in ("forbidden 1", "forbidden 2"):
        assert httpx.post(url, json={"prompt": prompt}, headers=H(key)).status_code == 400
    body = {"prompt": "raise-invalid", "size": "256x256"}
    if wait:
        bad = httpx.post(url, json=body, headers=H(key))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value", bad.text
    else:
        job = httpx.post(url, json=body, headers={**H(key), "Prefer": "respond-async"}).json()
        wait_status(live, key, job["id"], "failed")
    ok = httpx.post(url, json={"prompt": "a cat", "size": "256x256"}, headers=H(key))
    assert ok.status_code == 200, ok.text
    again = httpx.post(url, json={"prompt": "a dog", "size": "256x256"}, headers=H(key))
    assert again.status_code == 429 and again.headers["retry-after"]
