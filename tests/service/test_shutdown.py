"""SIGTERM with waiting, queued and running jobs: nothing is charged twice or lost."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from unclip.service.db import Job

from .conftest import FakeEngine, make_settings, start_server
from .test_books import books
from .test_jobs import ASYNC, H, wait_status


def test_sigterm_answers_waiting_requests_503_refunds_them_and_keeps_async_jobs(tmp_path: Path) -> None:
    engine = FakeEngine()
    srv = start_server(make_settings(tmp_path, shutdown_grace_s=1.0), engine=engine)
    uid, key = srv.user("member")
    engine.gate = threading.Event()  # nothing finishes on its own

    def sync(prompt: str) -> httpx.Response:
        body = {"prompt": prompt, "size": "256x256"}
        return httpx.post(srv.url + "/v1/images/generations", json=body, headers=H(key), timeout=60)

    pool = ThreadPoolExecutor(2)
    running = pool.submit(sync, "running")  # takes the worker
    deadline = time.monotonic() + 10
    while not any(h.status == "running" for h in list(srv.sv.jobs._handles.values())):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = pool.submit(sync, "waiting")  # queued behind it, its request waiting
    async_id = httpx.post(
        srv.url + "/v1/images/generations",
        json={"prompt": "later", "size": "256x256"},
        headers={**H(key), **ASYNC},
    ).json()["id"]
    while sum(h.waiters for h in list(srv.sv.jobs._handles.values())) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)

    srv.sigterm()
    r = waiting.result(timeout=10)  # at once, not after the grace period
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "server_shutting_down" and "Retry-After" in r.headers
    r = running.result(timeout=20)  # the grace period (1 s) passes without the job finishing
    assert r.status_code == 503 and r.json()["error"]["code"] == "server_shutting_down"
    srv.thread.join(30)

    with srv.sv.db.session() as s:
        statuses = {j.params["prompt"]: j.status for j in s.scalars(select(Job))}
    assert statuses == {"running": "cancelled", "waiting": "cancelled", "later": "queued"}
    balance, ledger = books(srv, uid)
    assert balance == ledger == srv.sv.settings.credit_grants["member"] - 1  # only the async job is charged

    srv2 = start_server(make_settings(tmp_path), engine=FakeEngine())
    try:
        wait_status(srv2, key, async_id, "succeeded")
        assert [c[1]["prompt"] for c in srv2.engine.calls] == ["later"]  # cancelled jobs never run again
    finally:
        srv2.stop()


def test_new_requests_during_shutdown_get_503(tmp_path: Path) -> None:
    engine = FakeEngine()
    srv = start_server(make_settings(tmp_path, shutdown_grace_s=2.0), engine=engine)
    _, key = srv.user("member")
    engine.gate = threading.Event()
    httpx.post(
        srv.url + "/v1/images/generations",
        json={"prompt": "a", "size": "256x256"},
        headers={**H(key), **ASYNC},
    )
    srv.sv.jobs.drain(2.0)  # as the signal does, before uvicorn closes the listening socket
    r = httpx.post(
        srv.url + "/v1/images/generations", json={"prompt": "b", "size": "256x256"}, headers=H(key)
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "server_shutting_down"
    engine.gate.set()
    srv.stop()


def test_a_job_whose_request_was_answered_as_refunded_is_not_put_back_at_shutdown() -> None:
    """A running job's waiting request is told at the end of the grace period that the job is cancelled and
    refunded (`shutdown`). When the engine's step outlasts the wait for the workers, `stop` also marks every
    running job to run again (`requeue`): the job went back to the queue, still charged, and ran after the
    restart."""
    from unclip.service.runner import Handle, JobRunner

    job = Job(id="job_1", user_id="u", kind="generation", model="m", params={"prompt": "a cat"}, cost=1)
    h = Handle(job.id)
    h.shutdown = h.requeue = True
    out = JobRunner._stopped(job, h)
    assert out.status == "cancelled" and out.error["error"]["code"] == "server_shutting_down"
    quiet = Handle(job.id)  # nobody waits for it: it runs again after the restart
    quiet.requeue = True
    assert JobRunner._stopped(job, quiet).status == "queued"
    cancelled = Handle(job.id)  # the user cancelled it, then the shutdown came: it stays cancelled
    cancelled.by_user = cancelled.requeue = True
    assert JobRunner._stopped(job, cancelled).status == "cancelled"


def _queued_job(tmp_path: Path) -> tuple[Any, Any, str, str]:
    """A database with a member whose month's grant is made and a queued 1-credit generation; a registry."""
    from unclip.service import credits
    from unclip.service.auth import approve, create_user
    from unclip.service.db import Database
    from unclip.service.engines import ModelRegistry

    db = Database(f"sqlite:///{tmp_path / 'jobs.db'}")
    with db.session() as s:
        user = create_user(s, "member@example.test")
        approve(s, user, "member", keep_admin=False)
        credits.ensure_grant(s, user, {"member": 10})
        credits.charge(s, user.id, 1, {"member": 10})
        job = Job(user_id=user.id, kind="generation", model="m", params={"prompt": "p", "n": 1, "size": "256x256"})
        job.cost = 1
        s.add(job)
        s.flush()
        ids = user.id, job.id
    return db, ModelRegistry(None, None, lambda p: None, {"m": FakeEngine()}), *ids


def test_a_running_job_cancelled_before_a_crash_is_refunded_at_the_restart_not_run(tmp_path: Path) -> None:
    """The cancel of a running job was kept only in memory: a crash before the engine's next step, and the
    restart ran the job again and charged it."""
    from unclip.service.jobs import JobManager
    from unclip.service.runner import worker_token
    from unclip.service.storage import BlobStore

    db, registry, uid, job_id = _queued_job(tmp_path)
    store = BlobStore(tmp_path / "images")
    crashed = JobManager(db, store, registry)
    assert crashed.runner.claim(job_id, worker_token()) is not None  # running when the process dies
    crashed.cancel(job_id)
    JobManager(db, store, registry).recover()
    with db.session() as s:
        assert s.get(Job, job_id).status == "cancelled"
    assert books_of(db, uid) == (10, [("grant", 10), ("refund", 1)])
    db.dispose()


def test_putting_a_job_back_at_shutdown_is_not_counted_as_a_crash(tmp_path: Path) -> None:
    from unclip.service.jobs import JobManager
    from unclip.service.runner import Handle, JobRunner, Outcome, worker_token
    from unclip.service.storage import BlobStore

    db, registry, _, job_id = _queued_job(tmp_path)
    store = BlobStore(tmp_path / "images")
    runner = JobRunner(db, store, registry)
    for _ in range(2):  # two graceful shutdowns during the job
        token = worker_token()
        job = runner.claim(job_id, token)
        h = Handle(job_id)
        h.requeue = True
        assert runner.complete(job, token, Outcome("queued"), h) == "queued"
    runner.claim(job_id, worker_token())  # then one crash
    JobManager(db, store, registry).recover()
    with db.session() as s:
        assert s.get(Job, job_id).status == "queued"  # one crash of MAX_ATTEMPTS, not three
    db.dispose()


def books_of(db: Any, uid: str) -> tuple[int, list[tuple[str, int]]]:
    from unclip.service.db import CreditEntry, User

    with db.session() as s:
        entries = s.scalars(select(CreditEntry).where(CreditEntry.user_id == uid).order_by(CreditEntry.id))
        return s.get(User, uid).credits, [(e.reason, e.delta) for e in entries if e.reason != "charge"]


def test_a_job_the_user_cancelled_stays_cancelled_when_a_shutdown_comes_before_it_ends(tmp_path: Path) -> None:
    """The engine finished the images after the user's cancel and a shutdown's cut-off: the user was told it
    is cancelled and refunded, so it is not kept (and charged) as a success."""
    from PIL import Image

    from unclip.service.runner import Handle, JobRunner, Outcome, worker_token
    from unclip.service.storage import BlobStore

    db, registry, uid, job_id = _queued_job(tmp_path)
    runner = JobRunner(db, BlobStore(tmp_path / "images"), registry)
    token = worker_token()
    job = runner.claim(job_id, token)
    h = Handle(job_id)
    h.by_user = True
    h.cancel.set()
    h.requeue = True  # the shutdown after it
    assert runner.complete(job, token, Outcome("succeeded", images=[Image.new("RGB", (8, 8))]), h) == "cancelled"
    assert books_of(db, uid) == (10, [("grant", 10), ("refund", 1)])
    db.dispose()


@pytest.mark.parametrize("asked", ["user", "shutdown"])
def test_a_cancel_recorded_by_another_process_is_honoured_when_the_job_is_put_back_or_taken_over(
    asked: str, tmp_path: Path
) -> None:
    """With a broker, the API process records a cancel in the job's row (the user's, or a shutdown's that told a
    waiting request "refunded"). A worker stopping before it read the row must not put the job back to run
    and charge again; a worker taking over the job after the first one died must not run it (nor, at the
    last attempt, fail it as a crash)."""
    from unclip.service.runner import MAX_ATTEMPTS, Handle, JobRunner, Outcome, worker_token
    from unclip.service.storage import BlobStore

    db, registry, uid, job_id = _queued_job(tmp_path)
    runner = JobRunner(db, BlobStore(tmp_path / "images"), registry, lease_s=60)
    token = worker_token()
    job = runner.claim(job_id, token)
    with db.session() as s:
        s.get(Job, job_id).cancel_requested = asked
    h = Handle(job_id)
    h.requeue = True  # the worker's own shutdown, before its lease renewal read the cancel
    assert runner.complete(job, token, Outcome("queued"), h) == "cancelled"
    with db.session() as s:
        ended = s.get(Job, job_id)
        code = (ended.error or {}).get("error", {}).get("code")
        assert (ended.status, code) == ("cancelled", "server_shutting_down" if asked == "shutdown" else None)
    assert books_of(db, uid) == (10, [("grant", 10), ("refund", 1)])

    db2, registry2, uid2, job2 = _queued_job(tmp_path / "second")
    runner2 = JobRunner(db2, BlobStore(tmp_path / "images2"), registry2, lease_s=60)
    runner2.claim(job2, worker_token())
    with db2.session() as s:
        row = s.get(Job, job2)
        row.cancel_requested, row.attempts, row.lease_until = asked, MAX_ATTEMPTS, 1.0  # its worker died
    assert runner2.claim(job2, worker_token()) is None
    with db2.session() as s:
        assert s.get(Job, job2).status == "cancelled"
    assert books_of(db2, uid2) == (10, [("grant", 10), ("refund", 1)])
    db.dispose()
    db2.dispose()


def test_an_async_companion_put_back_at_shutdown_stays_queued(tmp_path: Path) -> None:
    """Two workers, batching: worker A runs J1 with J2 in its pass, worker B has taken J2 off the queue and
    waits for that pass. The shutdown puts both back; B then read the put-back's cancel flag as a cancel and
    ended J2 cancelled (refunded, never run)."""
    from .fakes import BatchFakeEngine
    from .test_jobs import _until

    batch, slow1, slow2 = BatchFakeEngine(), FakeEngine(), FakeEngine()
    batch.gate, slow1.gate, slow2.gate = threading.Event(), threading.Event(), threading.Event()
    engines = {"unclip-test": batch, "slow1": slow1, "slow2": slow2}
    srv = start_server(make_settings(tmp_path, workers=2, batch_images=8, shutdown_grace_s=0.5), engines=engines)

    def statuses() -> dict[str, str]:
        with srv.sv.db.session() as s:
            return {j.params["prompt"]: j.status for j in s.scalars(select(Job))}

    try:
        _, key = srv.user("trusted")
        for prompt, model in (("slow1", "slow1"), ("slow2", "slow2"), ("J1", None), ("J2", None)):
            body = {"prompt": prompt, "size": "256x256", **({"model": model} if model else {})}
            r = httpx.post(srv.url + "/v1/images/generations", json=body, headers={**H(key), **ASYNC})
            assert r.status_code == 202, r.text
            if model:
                _until(lambda p=prompt: statuses()[p] == "running")
        slow1.gate.set()  # worker A takes J1, with J2 in its pass
        _until(lambda: statuses()["J2"] == "running")
        slow2.gate.set()  # worker B takes J2 off the queue and waits for A's pass
        _until(lambda: statuses()["slow2"] == "succeeded")
        time.sleep(0.3)
        srv.sigterm()
        srv.thread.join(30)
        assert statuses() == {"slow1": "succeeded", "slow2": "succeeded", "J1": "queued", "J2": "queued"}
    finally:
        for gate in (slow1.gate, slow2.gate, batch.gate):
            gate.set()
        srv.stop()
