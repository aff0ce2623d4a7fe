"""`unclip worker`: a process that runs the broker's jobs with the same engine and the same job and credit
transitions as the embedded queue (`runner.JobRunner`). Run any number of them, on any host that reaches the
database, the broker and the image store (the data folder, shared)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from sqlalchemy import select

from unclip.service.db import Database, Job, now
from unclip.service.dispatch import Dispatcher, redact
from unclip.service.engines import Loader, ModelRegistry
from unclip.service.policy import use_provenance_key
from unclip.service.runner import Handle, JobRunner, move, worker_token
from unclip.service.settings import Settings
from unclip.service.storage import BlobStore

log = logging.getLogger("unclip.worker")


class Lease(threading.Thread):
    """While a job runs: every `every_s`, renew its lease, publish its progress and pick up a cancel request.
    If the row is no longer this attempt's (another worker took it over after a stall, or it was finished),
    the attempt is cancelled, and `complete` will store nothing."""

    def __init__(self, db: Database, h: Handle, token: str, lease_s: float, every_s: float) -> None:
        super().__init__(name=f"lease-{h.job_id}", daemon=True)
        self.db, self.h, self.token = db, h, token
        self.lease_s, self.every_s = lease_s, every_s
        self.halt = threading.Event()

    def run(self) -> None:
        h = self.h
        while not self.halt.wait(self.every_s):
            try:
                with self.db.session() as s:
                    ours = move(
                        s,
                        h.job_id,
                        ("running",),
                        Job.worker == self.token,
                        lease_until=now() + self.lease_s,
                        progress_step=h.step,
                        progress_total=h.total,
                    )
                    asked = s.scalar(select(Job.cancel_requested).where(Job.id == h.job_id)) if ours else None
            except Exception as exc:  # the database blinked: the lease has slack for a few tries
                log.warning("could not renew the lease of job %s: %s", h.job_id, exc)
                continue
            if not ours:
                if self.halt.is_set():  # its attempt has just ended it
                    return
                log.warning("job %s is no longer this worker's; stopping it", h.job_id)
                h.cancel.set()
                return
            if asked:
                h.shutdown, h.by_user = asked == "shutdown", asked == "user"
                h.cancel.set()


class BrokerWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = 1,
        engines: dict[str, Any] | None = None,
        engine_loader: Loader | None = None,
    ) -> None:
        if not settings.broker_url:
            raise ValueError("a worker needs the broker's URL (--broker or UNCLIP_BROKER_URL)")
        self.settings = settings
        self.threads = max(1, threads)
        self.db = Database(settings.db_url, run_migrations=False)
        self.store = BlobStore(settings.data_dir / "images")
        self.store.check_writable()  # the worker writes the images: found at the start, not after a job
        use_provenance_key(settings.data_dir)
        self.registry = ModelRegistry.from_settings(settings, engine_loader, engines)
        self.runner = JobRunner(self.db, self.store, self.registry, lease_s=settings.lease_s)
        self.dispatcher = Dispatcher(settings.broker_url, heartbeat_s=settings.broker_heartbeat_s)
        self.actor = self.dispatcher.declare(self.process)
        self._handles: dict[str, Handle] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def process(self, job_id: str) -> None:
        """The actor: run one job if it is this worker's to run (a repeated or stale message does nothing)."""
        if self._stopping.is_set():  # delivered while shutting down: leave it to another worker
            self.dispatcher.send(job_id)
            return
        token = worker_token()
        job = self.runner.claim(job_id, token)
        if job is None:
            log.debug("job %s is not this worker's to run", job_id)
            return
        group: list[tuple[Job, str]] = []
        hs: list[Handle] = []
        leases: list[Lease] = []

        def hold(j: Job, tok: str) -> None:  # the job's lease is renewed from now on
            h = Handle(j.id, status="running")
            lease = Lease(self.db, h, tok, self.settings.lease_s, every_s=min(0.25, self.settings.lease_s / 4))
            with self._lock:
                self._handles[h.job_id] = h
            group.append((j, tok))
            hs.append(h)
            leases.append(lease)
            lease.start()

        # before the companions: finding them loads the model, which can outlast the lease of a claimed job
        hold(job, token)
        try:
            if self.settings.batch_images > 1 and job.kind == "generation":
                for companion in self.runner.claim_companions(job, self.settings.batch_images):
                    hold(*companion)
        except BaseException:
            self._release(hs, leases)
            raise
        jobs = [j for j, _ in group]
        if len(jobs) > 1:
            log.info(
                "jobs %s (%d images) in one pass",
                ", ".join(j.id for j in jobs),
                sum(j.params["n"] for j in jobs),
            )
        else:
            log.info("job %s (%s) started, attempt %d", job_id, job.kind, job.attempts)
        try:
            outcomes = self.runner.execute_batch(jobs, hs)
            statuses = []  # each under its lease: storing a batch of large images can outlast one
            for (j, tok), h, out, lease in zip(group, hs, outcomes, leases, strict=True):
                statuses.append(self.runner.complete(j, tok, out, h))
                lease.halt.set()
        finally:
            self._release(hs, leases)
        for j, status in zip(jobs, statuses, strict=True):
            if status is None:
                log.warning(
                    "job %s was taken from this worker before it finished; its result was dropped", j.id
                )
                continue
            log.info("job %s %s", j.id, status)
            if status == "queued":  # this worker is stopping, or the pass stopped for another job
                self.dispatcher.send(j.id)

    def wait_for_broker(self, timeout_s: float = 60.0) -> None:
        self.dispatcher.wait(timeout_s)

    def wait_for_schema(self, timeout_s: float = 120.0) -> None:
        """The server (or `unclip admin migrate`) creates and upgrades the schema; a worker only waits for it."""
        from alembic.script import ScriptDirectory
        from sqlalchemy import text

        from unclip.service.db import alembic_config

        head = ScriptDirectory.from_config(alembic_config(self.settings.db_url)).get_current_head()
        deadline = time.monotonic() + timeout_s
        said = ""
        while True:
            try:
                with self.db.session() as s:
                    version = s.scalar(text("SELECT version_num FROM alembic_version"))
                if version == head:
                    return
                why = f"the database's schema is at {version}, this worker needs {head}"
            except Exception as exc:
                detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
                if "alembic_version" in detail:
                    why = "the database has no schema yet"
                elif "authentication" in detail or "does not exist" in detail:  # waiting will not mend these
                    raise RuntimeError(f"cannot use the database: {detail}") from None
                else:
                    why = f"cannot reach the database ({detail})"
            if why != said:
                log.warning("waiting for the database: %s", why)
                said = why
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{why}: start `unclip serve` with the same --db first, or run `unclip admin migrate`"
                    if "schema" in why else why
                )
            time.sleep(1.0)

    def _release(self, hs: list[Handle], leases: list[Lease]) -> None:
        for lease in leases:
            lease.halt.set()
            lease.join()
        with self._lock:
            for h in hs:
                self._handles.pop(h.job_id, None)

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume jobs until SIGTERM/SIGINT (or `stop`): then take no new job, give running ones the shutdown
        grace, and put back in the queue those that did not finish."""
        import dramatiq

        stop = stop or threading.Event()
        self.wait_for_broker()
        self.wait_for_schema()
        self.registry.get(self.registry.default)  # load the default model before taking jobs
        worker = dramatiq.Worker(self.dispatcher.broker, worker_threads=self.threads)
        worker.queue_prefetch = self.threads  # one message per thread: the rest stay for other workers
        worker.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        log.info("worker ready: %d thread(s), broker %s", self.threads, redact(self.settings.broker_url))
        stop.wait()
        self.shutdown(worker)

    def shutdown(self, worker: Any) -> None:
        self._stopping.set()
        for consumer in list(worker.consumers.values()):
            consumer.pause()  # fetch nothing more; a message already fetched is sent back by `process`
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._handles:
                    break
            time.sleep(0.1)
        with self._lock:
            for h in self._handles.values():
                h.requeue = True
                h.cancel.set()
        worker.stop(timeout=60_000)
        self.dispatcher.close()
        self.db.dispose()
