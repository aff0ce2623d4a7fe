"""SIGTERM with waiting, queued and running jobs: nothing is charged twice or lost."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
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
