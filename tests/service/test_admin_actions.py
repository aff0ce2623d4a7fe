"""Admin changes: two admins demoting each other at once keep one admin; every change is logged with who made
it (over the API and from the command line)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from unclip.cli import app
from unclip.service.db import Database, User

from .conftest import Server
from .test_books import DATABASES, PG_URL, _clean_postgres


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("database", DATABASES)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(database: str, tmp_path: Path) -> None:
    """Each demotion alone leaves another admin; together they would leave none, so the second must wait for
    the first and be refused (409 last_admin)."""
    from unclip.service.auth import create_user, set_access
    from unclip.service.errors import APIError

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    db = Database(_clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'admins.db'}")
    with db.session() as s:
        a, b = (create_user(s, f"{n}@example.test", role="admin").id for n in "ab")
    refused: list[str | None] = []

    def demote(uid: str) -> None:
        try:
            with db.session() as s:
                set_access(s, s.get(User, uid), status="suspended")
        except APIError as exc:
            refused.append(exc.code)

    with db.session() as first:
        set_access(first, first.get(User, b), role="member")  # b demoted, not committed yet
        second = threading.Thread(target=demote, args=(a,))
        second.start()
        second.join(timeout=1.0)  # a's suspension, racing: it must wait for the first change
        waited = second.is_alive()
    second.join()
    with db.session() as s:
        active = s.scalar(select(func.count()).where(User.role == "admin", User.status == "active"))
    db.dispose()
    assert (waited, refused, active) == (True, ["last_admin"], 1)


def test_admin_changes_are_logged_with_who_made_them(live: Server) -> None:
    uid, _ = live.user("waitlisted")
    admin, admin_key = live.user("admin")
    other_admin, other_key = live.user("admin")
    base = f"{live.url}/v1/admin"
    assert httpx.post(f"{base}/users/{uid}/approve", json={"role": "member"}, headers=H(admin_key)).is_success
    assert httpx.patch(f"{base}/users/{uid}", json={"role": "trusted"}, headers=H(admin_key)).is_success
    r = httpx.patch(f"{base}/users/{uid}", json={"status": "suspended", "credits_delta": -10**6}, headers=H(other_key))
    assert r.is_success and r.json()["credits"] == 0
    key = httpx.post(f"{base}/users/{uid}/keys", json={"name": "laptop"}, headers=H(other_key)).json()
    for _ in range(2):  # revoking twice is one revocation
        assert httpx.delete(f"{base}/keys/{key['id']}", headers=H(admin_key)).is_success
    refused = httpx.patch(f"{base}/users/{uid}", json={"role": "nobody"}, headers=H(admin_key))
    assert refused.status_code == 400  # a refused change logs nothing

    log = httpx.get(f"{base}/actions", params={"user_id": uid}, headers=H(admin_key)).json()["data"]
    got = [(e["actor_id"], e["action"], e["detail"]) for e in reversed(log)]
    granted = live.sv.settings.credit_grants["member"]  # the month's grant, made at the approval
    assert got == [
        (admin, "user.approve", {"before": "waitlisted", "after": "member"}),
        (admin, "user.role", {"before": "member", "after": "trusted"}),
        (other_admin, "user.status", {"before": "active", "after": "suspended"}),
        (other_admin, "user.credits", {"asked": -(10**6), "applied": -granted}),
        (other_admin, "key.create", {"key_id": key["id"]}),
        (admin, "key.revoke", {"key_id": key["id"]}),
    ]
    assert all(e["user_id"] == uid and e["via"] == "api" for e in log)
    by_other = httpx.get(f"{base}/actions", params={"actor_id": other_admin}, headers=H(admin_key)).json()
    assert [e["action"] for e in by_other["data"]] == ["key.create", "user.credits", "user.status"]
    member_key = live.user("member")[1]
    r = httpx.get(f"{base}/actions", headers=H(member_key))
    assert r.status_code == 403


def test_changes_from_the_command_line_are_logged_as_the_operators(tmp_path: Path) -> None:
    runner = CliRunner()
    var = ["--data-dir", str(tmp_path / "var")]

    def run(*args: str) -> str:
        r = runner.invoke(app, [*args, *var])
        assert r.exit_code == 0, r.output
        return r.output

    run("admin", "migrate")
    run("users", "add", "solo@example.test", "--role", "admin")
    # the operator may demote the last admin (it is how they recover), and it is logged
    run("users", "suspend", "solo@example.test")
    assert "solo@example.test: member, suspended" in run("users", "role", "solo@example.test", "member")
    run("users", "credits", "solo@example.test", "5")
    out = run("admin", "actions", "--user", "solo@example.test").splitlines()
    assert [line.split()[3:5] for line in out] == [
        ["user.credits", "solo@example.test"],
        ["user.role", "solo@example.test"],
        ["user.status", "solo@example.test"],
        ["key.create", "solo@example.test"],
        ["user.create", "solo@example.test"],
    ]
    assert all(line.split()[2] == "cli" for line in out)
    r = runner.invoke(app, ["users", "suspend", "solo@example.test", *var])
    assert r.exit_code == 0  # suspending again changes nothing: nothing more is logged
    assert len(run("admin", "actions").splitlines()) == 5


def test_admin_accounts_and_keys_made_at_startup_are_logged(tmp_path: Path) -> None:
    """The first start's admin and every UNCLIP_ADMIN_KEY rotation change who can administer the server."""
    from unclip.service import actions
    from unclip.service.app import bootstrap_admin

    from .conftest import make_settings

    db = Database(f"sqlite:///{tmp_path / 'start.db'}")
    try:
        assert bootstrap_admin(db, make_settings(tmp_path, bootstrap_admin=True)) is not None
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-first-startup-key"))
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-first-startup-key"))  # a restart
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-second-startup-key"))
        with db.session() as s:
            rows = [actions.action_json(a) for a in reversed(actions.recent(s))]
        seen = [(r["action"], r["detail"].get("by"), r["via"]) for r in rows]
        assert seen == [
            ("user.create", "first start", "cli"),
            ("key.create", "first start", "cli"),
            ("key.create", "UNCLIP_ADMIN_KEY", "cli"),
            ("key.revoke", "UNCLIP_ADMIN_KEY", "cli"),
            ("key.create", "UNCLIP_ADMIN_KEY", "cli"),
        ], seen
        assert rows[3]["detail"]["key_id"] == rows[2]["detail"]["key_id"]
    finally:
        db.dispose()


def test_an_admin_account_made_for_the_admin_key_is_logged(tmp_path: Path) -> None:
    from unclip.service import actions
    from unclip.service.app import bootstrap_admin

    from .conftest import make_settings

    db = Database(f"sqlite:///{tmp_path / 'start.db'}")
    try:
        bootstrap_admin(db, make_settings(tmp_path, admin_key="sk-unclip-only-startup-key"))
        with db.session() as s:
            seen = [(a.action, a.detail.get("by")) for a in reversed(actions.recent(s))]
        assert seen == [("user.create", "UNCLIP_ADMIN_KEY"), ("key.create", "UNCLIP_ADMIN_KEY")], seen
    finally:
        db.dispose()


def test_approving_someone_not_on_the_waitlist_is_refused_and_names_are_bounded(live: Server) -> None:
    """"Approve as member" from a stale page demoted a user another admin had approved as trusted (logged as an
    approval); a user or key name over the column's 200 characters was a 500 on PostgreSQL."""
    uid, _ = live.user("waitlisted")
    _, admin_key = live.user("admin")
    base = f"{live.url}/v1/admin"
    assert httpx.post(f"{base}/users/{uid}/approve", json={"role": "trusted"}, headers=H(admin_key)).is_success
    again = httpx.post(f"{base}/users/{uid}/approve", json={"role": "member"}, headers=H(admin_key))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_waitlisted"
    user = httpx.get(f"{base}/users", params={"role": "trusted"}, headers=H(admin_key)).json()["data"]
    assert uid in {u["id"] for u in user}
    long = "n" * 201
    for path, body in ((f"{base}/users", {"email": "long@example.test", "name": long}),
                       (f"{base}/users/{uid}/keys", {"name": long}),
                       (f"{base}/users", {"email": "e" * 310 + "@example.test"})):  # fmt: skip
        r = httpx.post(path, json=body, headers=H(admin_key))
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (path, r.text)


@pytest.mark.parametrize("database", DATABASES)
def test_of_two_approvals_at_once_the_second_is_refused_not_written_over_the_first(
    database: str, tmp_path: Path
) -> None:
    """Two admins (or a stale page and a double click) approve one waitlisted user: the approval that finds
    the user approved by the time it writes is a 409, not an overwrite of the role and grant the other set."""
    from unclip.service.auth import NotWaitlisted, approve, create_user

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    db = Database(_clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'approve.db'}")
    with db.session() as s:
        uid = create_user(s, "w@example.test", role="waitlisted").id
    outcome: list[str] = []

    def approve_as(role: str) -> None:
        try:
            with db.session() as s:
                approve(s, s.get(User, uid), role, keep_admin=True)
            outcome.append(role)
        except NotWaitlisted:
            outcome.append("refused")

    with db.session() as stale:
        user = stale.get(User, uid)
        assert user.role == "waitlisted"  # read before the other approval
        other = threading.Thread(target=approve_as, args=("admin",))
        other.start()
        other.join()
        with pytest.raises(NotWaitlisted, match="role: admin"):
            approve(stale, user, "member", keep_admin=True)
    with db.session() as s:
        assert (outcome, s.get(User, uid).role) == (["admin"], "admin")
    db.dispose()


def test_review_decisions_are_logged_with_who_made_them(live: Server) -> None:
    """A decision replaced the one before it on the queue's row: which admin withheld an image, before another
    restored it, was nowhere."""
    uid, key = live.user("member")
    a, a_key = live.user("admin")
    b, b_key = live.user("admin")
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a pear", "size": "256x256"}, headers=H(key))
    assert r.status_code == 200
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    report = httpx.post(live.url + f"/v1/images/{image_id}/report", json={"reason": "x"}, headers=H(key)).json()
    for admin_key, decision in ((a_key, "confirm"), (b_key, "overturn")):
        r = httpx.post(live.url + f"/v1/admin/reviews/report/{report['id']}", json={"decision": decision},
                       headers=H(admin_key))  # fmt: skip
        assert r.status_code == 200
    log = httpx.get(f"{live.url}/v1/admin/actions", params={"user_id": uid}, headers=H(a_key)).json()["data"]
    detail = {"kind": "report", "item": report["id"], "image_id": image_id}
    assert [(e["actor_id"], e["action"], e["detail"]) for e in reversed(log)] == [
        (a, "review.confirm", detail),
        (b, "review.overturn", detail),
    ]
