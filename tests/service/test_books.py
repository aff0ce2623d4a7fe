"""Credits under concurrency: racing cancels, parallel submits of one user and admin adjustments keep every
balance equal to the sum of its ledger, on SQLite and (when UNCLIP_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from unclip.service.db import CreditEntry, Database, User

from .conftest import Server, make_settings, start_server
from .test_jobs import ASYNC, H, wait_status

PG_URL = os.environ.get("UNCLIP_TEST_POSTGRES_URL", "")
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _clean_postgres() -> str:
    from sqlalchemy import text

    from unclip.service.db import make_engine

    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return PG_URL


@pytest.fixture(params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    kw = {"rate_limits": {"member": 10_000, "trusted": 10_000, "admin": 10_000}, "queue_size": 200}
    if request.param == "postgres":
        if not PG_URL:
            pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
        kw["database_url"] = _clean_postgres()
    srv = start_server(make_settings(tmp_path, **kw))
    yield srv
    srv.engine.gate = None
    srv.stop()


def books(srv: Server, user_id: str) -> tuple[int, int]:
    """(balance, sum of the ledger) of one user."""
    with srv.sv.db.session() as s:
        balance = s.scalar(select(User.credits).where(User.id == user_id))
        ledger = s.scalar(
            select(func.coalesce(func.sum(CreditEntry.delta), 0)).where(CreditEntry.user_id == user_id)
        )
        return int(balance), int(ledger)


def submit(srv: Server, key: str) -> httpx.Response:
    return httpx.post(
        srv.url + "/v1/images/generations",
        json={"prompt": "x", "size": "256x256"},
        headers={**H(key), **ASYNC},
    )


@pytest.mark.parametrize("tries", [12, pytest.param(50, marks=pytest.mark.slow)])
def test_racing_cancels_refund_once(server: Server, tries: int) -> None:
    uid, key = server.user("member")
    server.engine.gate = threading.Event()  # the first job holds the worker: the others stay queued
    blocker = submit(server, key).json()["id"]
    wait_status(server, key, blocker, "running")
    start, _ = books(server, uid)
    with ThreadPoolExecutor(8) as pool:
        for _ in range(tries):
            job_id = submit(server, key).json()["id"]
            go = threading.Barrier(8)

            def cancel(job_id: str = job_id, go: threading.Barrier = go) -> int:
                go.wait()
                return httpx.post(f"{server.url}/v1/jobs/{job_id}/cancel", headers=H(key)).status_code

            codes = list(pool.map(lambda _: cancel(), range(8)))
            assert set(codes) == {200}, codes
            balance, ledger = books(server, uid)
            assert balance == ledger == start, f"balance {balance}, ledger {ledger}, before {start}"
    assert httpx.get(f"{server.url}/v1/jobs/{blocker}", headers=H(key)).json()["status"] == "running"


def set_balance(srv: Server, user_id: str, credits_left: int) -> None:
    from unclip.service import credits

    with srv.sv.db.session() as s:
        user = s.get(User, user_id)
        credits.ensure_grant(s, user, srv.sv.settings.credit_grants)  # this month's grant is in
        credits.adjust(s, user, credits_left - user.credits)


def test_parallel_submits_of_one_user_charge_exactly_what_they_can(server: Server) -> None:
    uid, key = server.user("member")
    server.engine.gate = threading.Event()  # nothing finishes while the submits race
    cost = server.sv.settings.credit_costs["256x256"]
    set_balance(server, uid, 20 * cost)
    go = threading.Barrier(60)

    def one(_: int) -> int:
        go.wait()
        return submit(server, key).status_code

    with ThreadPoolExecutor(60) as pool:
        codes = list(pool.map(one, range(60)))
    assert sorted(codes) == [202] * 20 + [429] * 40, codes
    assert books(server, uid) == (0, 0)


def test_negative_admin_adjustment_records_what_it_took(server: Server) -> None:
    uid, _ = server.user("member")
    _, admin = server.user("admin")
    balance, _ = books(server, uid)
    r = httpx.patch(
        f"{server.url}/v1/admin/users/{uid}", json={"credits_delta": -(balance + 500)}, headers=H(admin)
    )
    assert r.status_code == 200 and r.json()["credits"] == 0
    assert books(server, uid) == (0, 0)
    r = httpx.patch(f"{server.url}/v1/admin/users/{uid}", json={"credits_delta": 7}, headers=H(admin))
    assert r.json()["credits"] == 7 and books(server, uid) == (7, 7)


@pytest.mark.parametrize("database", DATABASES)
def test_the_monthly_grant_is_made_once_when_two_requests_race(database: str, tmp_path: Path) -> None:
    """A request that read the user before another one granted the month (and charged) must not grant again,
    nor write back a balance that undoes that charge (SQLite has no FOR UPDATE to serialise them)."""
    from unclip.service import credits
    from unclip.service.auth import approve, create_user
    from unclip.service.db import Database

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    db = Database(_clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'books.db'}")
    grants = {"trusted": 2000}
    with db.session() as s:
        user = create_user(s, "race@example.test", role="waitlisted")
        approve(s, user, "trusted", keep_admin=False)
        uid = user.id
    with db.session() as late:
        stale = late.get(User, uid)  # read before the other request's grant
        with db.session() as first:
            assert credits.charge(first, uid, 5, grants) == 1995
        credits.ensure_grant(late, stale, grants)
        assert stale.credits == 1995
    with db.session() as s:
        of_user = CreditEntry.user_id == uid
        grants_made = s.scalar(select(func.count()).where(of_user, CreditEntry.reason == "grant"))
        ledger = s.scalar(select(func.sum(CreditEntry.delta)).where(of_user))
        assert grants_made == 1 and s.get(User, uid).credits == ledger == 1995
    db.dispose()


def _member_db(tmp_path: Path, grants: dict[str, int]) -> tuple[Database, str]:
    """A SQLite database with one member, this month's grant made."""
    from unclip.service import credits
    from unclip.service.auth import approve, create_user

    db = Database(f"sqlite:///{tmp_path / 'books.db'}")
    with db.session() as s:
        user = create_user(s, "member@example.test", role="waitlisted")
        approve(s, user, "member", keep_admin=False)
        credits.ensure_grant(s, user, grants)
        return db, user.id


def test_an_admin_debit_racing_a_charge_never_takes_the_balance_below_zero(tmp_path: Path) -> None:
    """SQLite has no FOR UPDATE: a charge committed between the debit's read and its write must make the write
    miss and the debit be sized again on what is left."""
    from sqlalchemy import event

    from unclip.service import credits

    grants = {"member": 100}
    db, uid = _member_db(tmp_path, grants)
    charged: list[int] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def charge_first(conn, cursor, statement, params, context, executemany) -> None:
        # another request's charge commits just before the debit's first write
        debit_write = statement.startswith("UPDATE users SET credits=") and threading.current_thread().name == "admin"
        if debit_write and not charged:
            charged.append(1)
            spend = threading.Thread(target=_charge, args=(db, uid, 10, grants))
            spend.start()
            spend.join()

    def debit() -> None:
        with db.session() as s:
            assert credits.adjust(s, s.get(User, uid), -100) == -90

    admin = threading.Thread(target=debit, name="admin")
    admin.start()
    admin.join()
    assert charged
    with db.session() as s:
        ledger = s.scalar(select(func.sum(CreditEntry.delta)).where(CreditEntry.user_id == uid))
        assert s.get(User, uid).credits == ledger == 0
    db.dispose()


def _charge(db: Database, uid: str, cost: int, grants: dict[str, int]) -> None:
    from unclip.service import credits

    with db.session() as s:
        credits.charge(s, uid, cost, grants)


def test_the_same_email_signing_up_at_once_gets_one_account(server: Server) -> None:
    """Racing signups of one email: one 201, the others 409 email_taken (PostgreSQL's unique index raised a
    500 for the losers)."""
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(server.url + "/v1/signup", json={"email": "twin@example.test"}), range(6))
        )
    assert sorted(r.status_code for r in answers) == [201] + [409] * 5
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"email_taken"}


@pytest.mark.parametrize("ending", ["cancelled", "succeeded"])
def test_a_job_charged_before_the_monthly_grant_carries_no_credits_into_the_next_month(
    ending: str, tmp_path: Path
) -> None:
    """A job queued in January and cancelled after February's grant gave back its credits on top of the grant:
    a month's unused credits carried over. What unfinished jobs hold counts as balance when the month turns."""
    import time

    from unclip.service import credits
    from unclip.service.db import Job
    from unclip.service.runner import finish

    february = time.time() + 40 * 86400  # the month after this one
    grants = {"member": 100}
    db, uid = _member_db(tmp_path, grants)
    with db.session() as s:
        user = s.get(User, uid)
        credits.adjust(s, user, -user.credits)  # January spent but 40, which the job takes
        credits.adjust(s, user, 40)
        job = Job(user_id=user.id, kind="generation", model="m", params={"prompt": "a cat", "n": 1}, cost=40)
        s.add(job)
        s.flush()
        credits.charge(s, user.id, 40, {}, job.id)
        job_id = job.id
    with db.session() as s:
        user = s.get(User, uid)
        credits.ensure_grant(s, user, grants, t=february)
        assert user.credits == 60  # the grant less what the job holds
        finish(s, job_id, ("queued",), ending, None)
    with db.session() as s:
        ledger = s.scalar(select(func.sum(CreditEntry.delta)).where(CreditEntry.user_id == uid))
        balance = s.get(User, uid).credits
        assert balance == ledger == (100 if ending == "cancelled" else 60)
    db.dispose()


def test_a_model_that_fails_to_load_fails_and_refunds_its_jobs(tmp_path: Path) -> None:
    """With batching on, the companion search loaded the job's model outside any handler: the job stayed
    running and charged, its queue place leaked, and the request timed out saying it had been refunded."""
    for part in ("prior", "decoder"):  # a model folder as far as the registry looks; its loading fails
        (tmp_path / "models" / "broken" / part).mkdir(parents=True)

    def load(path: Path) -> object:
        raise RuntimeError(f"cannot load {path.name}")

    srv = start_server(make_settings(tmp_path, request_timeout_s=20.0, batch_images=8), engine_loader=load)
    try:
        uid, key = srv.user("member")
        set_balance(srv, uid, 100)
        start = books(srv, uid)
        body = {"prompt": "a cat", "model": "broken", "size": "256x256"}
        r = httpx.post(f"{srv.url}/v1/images/generations", json=body, headers=H(key), timeout=30)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error", r.text
        assert books(srv, uid) == start
        assert srv.sv.jobs.depth() == 0
        jobs = httpx.get(f"{srv.url}/v1/jobs", headers=H(key)).json()["data"]
        assert [j["status"] for j in jobs] == ["failed"]
    finally:
        srv.stop()


def test_credits_given_before_approval_come_on_top_of_the_first_grant(tmp_path: Path) -> None:
    """A gift to a waitlisted user was swallowed by the grant made at approval (the grant topped the balance
    up to 200): 50 then approval gave 200, approval then 50 gave 250."""
    import time

    from unclip.service import credits
    from unclip.service.auth import approve, create_user

    grants = {"member": 200, "waitlisted": 0}
    db = Database(f"sqlite:///{tmp_path / 'books.db'}")
    for gift_first in (True, False):
        with db.session() as s:
            user = create_user(s, f"{gift_first}@example.test", role="waitlisted")
            for step in ("gift", "approve") if gift_first else ("approve", "gift"):
                if step == "gift":
                    credits.adjust(s, user, 50, grants=grants)
                else:
                    approve(s, user, "member", keep_admin=False)
                    credits.ensure_grant(s, user, grants)
            ledger = s.scalar(select(func.sum(CreditEntry.delta)).where(CreditEntry.user_id == user.id))
            assert (user.credits, ledger) == (250, 250), gift_first
        with db.session() as s:  # next month: topped up to the grant, what is above it kept
            user = s.get(User, user.id)
            credits.ensure_grant(s, user, grants, t=time.time() + 40 * 86400)
            assert user.credits == 250
    db.dispose()


@pytest.mark.parametrize(
    ("left", "delta", "expected"), [(0, 50, 250), (150, -150, 50), (120, 0, 200), (500, -100, 400)]
)
def test_credits_changed_while_back_on_the_waitlist_come_on_top_of_the_grant_at_approval(
    tmp_path: Path, left: int, delta: int, expected: int
) -> None:
    """A user granted in an earlier month, put back on the waitlist, given (or docked) credits by an admin, then
    approved again: the top-up swallowed the gift (0 + 50 → 200) or undid the debit (150 − 150 → 200)."""
    import time

    from unclip.service import credits
    from unclip.service.auth import approve, create_user, set_access

    grants = {"member": 200, "waitlisted": 0}
    db = Database(f"sqlite:///{tmp_path / 'books.db'}")
    then = time.time() - 62 * 86400  # two months ago
    with db.session() as s:
        user = create_user(s, "back@example.test", role="waitlisted")
        approve(s, user, "member", keep_admin=False)
        credits.ensure_grant(s, user, grants, t=then)
        s.add(CreditEntry(user_id=user.id, delta=left - user.credits, reason="charge", created_at=then))
        user.credits = left  # what that month left
        set_access(s, user, role="waitlisted", keep_admin=False)
    with db.session() as s:
        user = s.get(User, user.id)
        credits.adjust(s, user, delta, grants=grants)  # the admin tab, while they wait
        approve(s, user, "member", keep_admin=False)
        credits.ensure_grant(s, user, grants)
        ledger = s.scalar(select(func.sum(CreditEntry.delta)).where(CreditEntry.user_id == user.id))
        assert (user.credits, ledger) == (expected, expected)
    db.dispose()
