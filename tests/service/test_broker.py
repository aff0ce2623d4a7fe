"""A deployment with a broker: the API enqueues into Redis, real `unclip worker` processes run the jobs on the
tiny model. A worker killed mid-job, the API restarted under load and the broker restarted lose nothing: every
accepted job ends once, with one stored result and one charge (or one refund)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from unclip.service.db import CreditEntry, ImageRecord, Job

from .conftest import Server, free_port, make_settings, start_server
from .test_books import DATABASES, PG_URL, _clean_postgres, books
from .test_jobs import ASYNC, H, wait_status

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.broker,
    pytest.mark.skipif(REDIS is None, reason="needs redis-server (apt-get install redis-server)"),
]
FAST = {"lease_s": 2.0, "broker_heartbeat_s": 3.0, "redispatch_s": 3.0, "shutdown_grace_s": 2.0}
LONG_JOB = {"prompt": "a red apple", "n": 4, "size": "1024x1024", "steps": 100}  # a few seconds on 2 cores


class Redis:
    """A private redis-server without persistence: killing it loses every message it held."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Deployment:
    tmp: Path
    redis: Redis
    model: Path
    db_url: str = ""  # empty: SQLite in the data folder
    api: Server | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self, **kw: Any) -> Any:
        return make_settings(
            self.tmp,
            **{
                "broker_url": self.redis.url,
                "model": str(self.model),
                "queue_size": 64,
                **({"database_url": self.db_url} if self.db_url else {}),
                **FAST,
                **kw,
            },
        )

    def start_api(self, **kw: Any) -> Server:
        self.api = start_server(self.settings(**kw), real_engine=True)
        return self.api

    def start_worker(self) -> subprocess.Popen[bytes]:
        st = self.settings()
        env = {
            **os.environ,
            "UNCLIP_LEASE_S": str(st.lease_s),
            "UNCLIP_BROKER_HEARTBEAT_S": str(st.broker_heartbeat_s),
            "UNCLIP_SHUTDOWN_GRACE_S": str(st.shutdown_grace_s),
            "OMP_NUM_THREADS": "1",
        }
        log = (self.tmp / f"worker-{len(self.workers)}.log").open("wb")
        cmd = [sys.executable, "-m", "unclip", "worker", "--broker", st.broker_url, "--db", st.db_url]
        cmd += ["--data-dir", str(self.tmp), "--model", str(self.model)]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        deadline = time.monotonic() + 120
        while b"worker ready" not in Path(log.name).read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + Path(log.name).read_text())
            time.sleep(0.1)
        return proc

    def job(self, job_id: str) -> Job:
        assert self.api is not None
        with self.api.sv.db.session() as s:
            return s.get(Job, job_id)

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self.api is not None:
            self.api.stop()
        self.redis.kill()


@pytest.fixture(params=DATABASES)
def deployment(request: pytest.FixtureRequest, tmp_path: Path, tiny_model: Path) -> Iterator[Deployment]:
    """The API in this process, workers in their own, on SQLite (processes of one machine) and on PostgreSQL
    (what several machines share)."""
    db_url = ""
    if request.param == "postgres":
        if not PG_URL:
            pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
        db_url = _clean_postgres()
    redis = Redis(tmp_path)
    redis.start()
    d = Deployment(tmp_path, redis, tiny_model, db_url)
    try:
        d.start_api()
        yield d
    finally:
        d.stop()


def stored_once(d: Deployment, user_id: str, job_id: str, n: int) -> None:
    """The job succeeded with exactly `n` stored images (those of its result) and exactly one charge."""
    assert d.api is not None
    with d.api.sv.db.session() as s:
        job = s.get(Job, job_id)
        rows = list(s.scalars(select(ImageRecord.id).where(ImageRecord.job_id == job_id)))
        ledger = [
            (e.reason, e.delta) for e in s.scalars(select(CreditEntry).where(CreditEntry.job_id == job_id))
        ]
    assert job.status == "succeeded", job.error
    assert sorted(rows) == sorted(job.result["images"]) and len(rows) == n
    assert ledger == [("charge", -job.cost)]


def test_a_worker_killed_mid_job_leaves_the_job_to_the_other(deployment: Deployment) -> None:
    d = deployment
    first, second = d.start_worker(), d.start_worker()
    uid, key = d.api.user("trusted")
    r = httpx.post(d.api.url + "/v1/images/generations", json=LONG_JOB, headers={**H(key), **ASYNC})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while not ((job := d.job(job_id)).status == "running" and job.progress_step > 0):
        assert time.monotonic() < deadline, f"the job never made progress: {job.status}"
        time.sleep(0.05)
    victim = int(job.worker.split(":")[1])
    survivor = second if victim == first.pid else first
    assert victim in (first.pid, second.pid)
    os.kill(victim, signal.SIGKILL)

    wait_status(d.api, key, job_id, "succeeded", timeout=120)
    job = d.job(job_id)
    assert job.attempts == 2 and int(job.worker.split(":")[1]) == survivor.pid
    stored_once(d, uid, job_id, n=4)
    balance, ledger = books(d.api, uid)
    assert balance == ledger


def test_a_worker_runs_compatible_queued_jobs_in_one_pass(deployment: Deployment) -> None:
    d = deployment
    uid, key = d.api.user("trusted")
    bodies = [{"prompt": f"a cat number {i}", "size": "256x256", "seed": i} for i in range(4)]
    bodies.append({"prompt": "a bigger cat", "size": "512x512"})  # another size: not in that pass
    ids = [
        httpx.post(d.api.url + "/v1/images/generations", json=b, headers={**H(key), **ASYNC}).json()["id"]
        for b in bodies
    ]
    d.start_worker()  # they all wait in the queue when it starts
    for job_id in ids:
        wait_status(d.api, key, job_id, "succeeded", timeout=60)
        stored_once(d, uid, job_id, n=1)
    passes = [line for line in (d.tmp / "worker-0.log").read_text().splitlines() if "in one pass" in line]
    assert len(passes) == 1 and all(i in passes[0] for i in ids[:4]) and ids[4] not in passes[0], passes
    with d.api.sv.db.session() as s:
        for job_id, body in zip(ids, bodies, strict=True):
            assert s.scalar(select(ImageRecord.prompt).where(ImageRecord.job_id == job_id)) == body["prompt"]


def test_cancel_reaches_the_worker_and_refunds(deployment: Deployment) -> None:
    d = deployment
    d.start_worker()
    uid, key = d.api.user("trusted")
    job_id = httpx.post(
        d.api.url + "/v1/images/generations", json=LONG_JOB, headers={**H(key), **ASYNC}
    ).json()["id"]
    wait_status(d.api, key, job_id, "running", timeout=60)
    t0 = time.monotonic()
    r = httpx.post(f"{d.api.url}/v1/jobs/{job_id}/cancel", headers=H(key), timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert time.monotonic() - t0 < 3.0
    with d.api.sv.db.session() as s:
        ledger = sorted(e.reason for e in s.scalars(select(CreditEntry).where(CreditEntry.job_id == job_id)))
        assert ledger == ["charge", "refund"]
        assert not list(s.scalars(select(ImageRecord.id).where(ImageRecord.job_id == job_id)))
    balance, ledger_sum = books(d.api, uid)
    assert balance == ledger_sum


def test_the_broker_restarting_loses_no_job(deployment: Deployment) -> None:
    d = deployment
    d.start_worker()
    uid, key = d.api.user("trusted")
    small = {"prompt": "a cat", "size": "256x256"}
    before = [httpx.post(d.api.url + "/v1/images/generations", json=small, headers={**H(key), **ASYNC})]
    d.redis.kill()  # messages it held are gone
    during = [
        httpx.post(d.api.url + "/v1/images/generations", json=small, headers={**H(key), **ASYNC}, timeout=30)
        for _ in range(3)
    ]
    assert all(r.status_code == 202 for r in before + during), [r.text for r in before + during]
    time.sleep(1.0)
    d.redis.start()
    for r in before + during:
        wait_status(d.api, key, r.json()["id"], "succeeded", timeout=90)
        stored_once(d, uid, r.json()["id"], n=1)


def test_restarting_the_api_under_load_loses_no_accepted_job(deployment: Deployment) -> None:
    d = deployment
    d.start_worker()
    d.start_worker()
    uid, key = d.api.user("trusted")
    accepted: list[str] = []
    answers: list[int] = []
    stop = threading.Event()
    url = [d.api.url]

    def load() -> None:
        while not stop.is_set():
            try:
                r = httpx.post(
                    url[0] + "/v1/images/generations",
                    json={"prompt": "a dog", "size": "256x256"},
                    headers={**H(key), **ASYNC},
                    timeout=10,
                )
            except httpx.TransportError:
                answers.append(0)  # the server was down
            else:
                answers.append(r.status_code)
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
            time.sleep(0.05)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(2.0)
        d.api.sigterm()
        d.api.stop()
        api = d.start_api()
        url[0] = api.url
        time.sleep(2.0)
    finally:
        stop.set()
        thread.join()
    assert accepted and set(answers) <= {0, 202, 503}, answers
    for job_id in accepted:
        wait_status(d.api, key, job_id, "succeeded", timeout=120)
        stored_once(d, uid, job_id, n=1)
    balance, ledger = books(d.api, uid)
    assert balance == ledger


def test_a_bounded_load_gets_images_429_or_503_and_nothing_else(deployment: Deployment) -> None:
    """Open-loop load well above what two workers serve, with a small queue: the server answers images, 503
    (queue full) or 429 (a member over its rate limit), never another error; the books balance afterwards and
    the workers' memory stays flat. bench/load_test.py measures the same at length (docs/reliability.md)."""
    from unclip.evaluation.load import run_load

    d = deployment
    d.api.stop()
    d.start_api(queue_size=8, rate_limits={"trusted": 100_000, "member": 30})
    workers = [d.start_worker(), d.start_worker()]
    users = [d.api.user("trusted") for _ in range(4)] + [d.api.user("member")]
    clients = [(key, 8.0) for _, key in users[:4]] + [(users[4][1], 5.0)]  # 37 requests/s offered
    report = run_load(
        d.api.url + "/v1/images/generations",
        clients,
        {"prompt": "a red apple", "size": "256x256"},
        10.0,
        memory_of={f"worker-{i}": w.pid for i, w in enumerate(workers)},
    )
    assert not report.unexpected, [(a.status, a.code) for a in report.unexpected][:10]
    assert report.count(200) > 0 and report.count(503) > 0 and report.count(429) > 0, report.summary()
    assert all(a.images == 1 for a in report.answers if a.status == 200)
    assert {a.code for a in report.answers if a.status == 503} == {"queue_full"}
    for name in report.memory_mb:
        assert report.growth_mb(name) < 100, report.summary()["memory_mb"]
    with d.api.sv.db.session() as s:
        jobs = list(s.scalars(select(Job)))
    assert len(jobs) == report.count(200)  # synchronous requests: only those answered 200 were accepted
    for job in jobs:
        stored_once(d, job.user_id, job.id, n=1)
    for user_id, _ in users:
        balance, ledger = books(d.api, user_id)
        assert balance == ledger


def test_a_worker_with_an_unreachable_broker_says_so(tmp_path: Path) -> None:
    from unclip.service.settings import Settings
    from unclip.service.worker import BrokerWorker

    from .fakes import FakeEngine

    settings = Settings(data_dir=tmp_path, broker_url=f"redis://:secret@127.0.0.1:{free_port()}/0")
    worker = BrokerWorker(settings, engines={"unclip-test": FakeEngine()})
    with pytest.raises(RuntimeError, match=r"cannot reach the broker at redis://…@127\.0\.0\.1") as err:
        worker.wait_for_broker(timeout_s=0.5)
    assert "secret" not in str(err.value)


def _one_charged_job(db: Any) -> str:
    from unclip.service import credits
    from unclip.service.auth import approve, create_user

    with db.session() as s:
        user = create_user(s, "m@example.test")
        approve(s, user, "member", keep_admin=False)
        credits.charge(s, user.id, 1, {"member": 10})
        job = Job(user_id=user.id, kind="generation", model="m", params={"prompt": "p", "n": 1, "size": "256x256"},
                  cost=1, created_at=time.time() - 5)  # fmt: skip
        s.add(job)
        s.flush()
        return job.id


def test_a_job_left_running_by_the_server_without_a_broker_runs_under_one(tmp_path: Path) -> None:
    """`unclip serve` (no broker: no leases) killed mid-job, then served with a broker: the job is sent to
    the workers and taken up (it stayed running, charged and holding a queue place for ever)."""
    from unclip.service.db import Database
    from unclip.service.engines import ModelRegistry
    from unclip.service.jobs import JobManager
    from unclip.service.remote import RemoteJobs
    from unclip.service.runner import JobRunner, worker_token
    from unclip.service.storage import BlobStore

    from .fakes import FakeEngine

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    job_id = _one_charged_job(db)
    registry = ModelRegistry(None, None, lambda p: None, {"m": FakeEngine()})
    store = BlobStore(tmp_path / "images")
    assert JobManager(db, store, registry).runner.claim(job_id, worker_token())  # then the server is killed
    assert JobManager(db, store, registry).runner.claim(job_id, worker_token()) is None  # no broker: not taken
    sent: list[str] = []
    api = RemoteJobs(db, type("Dispatcher", (), {"send": lambda self, jid: sent.append(jid)})(), redispatch_s=1.0)
    assert api.sweep() == 1 and sent == [job_id]
    assert JobRunner(db, store, registry, lease_s=15).claim(job_id, worker_token()) is not None


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="UNCLIP_TEST_POSTGRES_URL is not set")
def test_a_cancel_racing_a_workers_put_back_is_not_lost(tmp_path: Path) -> None:
    """PostgreSQL: the cancel's finish(queued) misses a running job, then a worker puts it back in the queue
    before the cancel's move(running): both missed, and the job ran again, charged. The row is locked first."""
    from sqlalchemy import event

    from unclip.service.db import Database
    from unclip.service.engines import ModelRegistry
    from unclip.service.remote import RemoteJobs
    from unclip.service.runner import Handle, JobRunner, Outcome, worker_token
    from unclip.service.storage import BlobStore

    from .fakes import FakeEngine

    _clean_postgres()
    api_db = Database(PG_URL)
    job_id = _one_charged_job(api_db)
    registry = ModelRegistry(None, None, lambda p: None, {"m": FakeEngine()})
    runner = JobRunner(Database(PG_URL, run_migrations=False), BlobStore(tmp_path / "images"), registry, lease_s=60)
    token = worker_token()
    claimed = runner.claim(job_id, token)
    assert claimed is not None
    put_back: list[threading.Thread] = []

    def between(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if not put_back and statement.startswith("UPDATE jobs SET status") and cursor.rowcount == 0:
            t = threading.Thread(target=runner.complete, args=(claimed, token, Outcome("queued"), Handle(job_id)))
            put_back.append(t)
            t.start()
            t.join(2)  # with the row locked it waits for the cancel's commit

    event.listen(api_db.engine, "after_cursor_execute", between)
    try:
        RemoteJobs(api_db, dispatcher=None).cancel(job_id)  # type: ignore[arg-type]
    finally:
        event.remove(api_db.engine, "after_cursor_execute", between)
    assert put_back
    put_back[0].join(10)
    with api_db.session() as s:
        row = s.get(Job, job_id)
        assert row.status == "cancelled" or row.cancel_requested == "user", (row.status, row.cancel_requested)
