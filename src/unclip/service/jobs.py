"""The embedded job queue: a bounded number of accepted jobs, worker thread(s) in the server that run them
(`runner.JobRunner`), cancellation, progress, and a graceful shutdown that never loses an accepted job (the
database is the source of truth). `remote.RemoteJobs` is the same interface over a broker's workers."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import select

from unclip.service.db import Database, Job, hold_jobs_lock
from unclip.service.engines import ModelRegistry
from unclip.service.errors import APIError
from unclip.service.runner import (
    MAX_ATTEMPTS,
    SHUTDOWN_CANCELLED,
    TERMINAL,
    Handle,
    JobRunner,
    Outcome,
    ShuttingDown,
    cancel_error,
    cancel_row,
    crashed_error,
    finish,
    move,
    prune_handles,
    worker_token,
)
from unclip.service.storage import BlobStore

log = logging.getLogger("unclip.service.jobs")
RETRY_MAX_S = 30.0  # the longest wait between tries while the database is away


def backoff(tries: int) -> float:
    """Seconds before try number `tries` + 1: 0.5, 1, 2, … up to RETRY_MAX_S."""
    return min(RETRY_MAX_S, 0.5 * 2 ** max(0, tries - 1))


__all__ = ["TERMINAL", "Handle", "JobManager", "QueueFull", "ShuttingDown"]


class QueueFull(APIError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The server is overloaded with other requests; retry shortly.",
            type="server_error",
            code="queue_full",
            headers={"Retry-After": "5"},
        )


class JobQueue:
    """What the embedded queue and a broker's API side share: the handles of the jobs this process watches,
    and the shutdown that answers waiting requests of unstarted jobs 503 (refunded)."""

    def __init__(self, db: Database, queue_size: int) -> None:
        self.db = db
        self.queue_size = queue_size
        self._handles: dict[str, Handle] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._draining: float | None = None  # monotonic time the shutdown began

    def drain(self, grace_s: float = 30.0) -> None:
        """The server is shutting down (SIGTERM): accept no new job and start none. A queued job that a request
        is waiting for is cancelled and refunded now, and the request answered 503, so that the client's retry
        is not charged twice; a queued job nobody waits for (an async one) stays queued. Running jobs get
        `grace_s` to finish; then `_cut_off_running`."""
        with self._lock:
            if self._draining is not None:
                return
            self._draining = time.monotonic()
            handles = list(self._handles.values())
        for h in handles:
            if h.status == "queued" and h.waiters:
                self.cancel_for_shutdown(h)
        timer = threading.Timer(grace_s, self._cut_off_running)
        timer.daemon = True
        timer.start()

    def _cut_off_running(self) -> None:
        raise NotImplementedError

    def cancel_for_shutdown(self, h: Handle) -> None:
        """Cancel and refund a queued job whose request waits, answering it 503 (see `drain`)."""
        with self.db.session() as s:
            won = finish(s, h.job_id, ("queued",), "cancelled", ShuttingDown(SHUTDOWN_CANCELLED).body())
        if won:
            h.status, h.shutdown, h.changed = "cancelled", True, time.monotonic()
            h.done.set()

    @property
    def draining(self) -> bool:
        return self._draining is not None


class JobManager(JobQueue):
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        registry: ModelRegistry,
        *,
        workers: int = 1,
        queue_size: int = 16,
        batch_images: int = 1,
    ) -> None:
        super().__init__(db, queue_size)
        self.store = store
        self.registry = registry
        self.workers = max(1, workers)
        self.batch_images = batch_images  # compatible queued generations run in one pass, up to this many images
        self.runner = JobRunner(db, store, registry)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._reserved = 0  # places taken by submits whose job is not queued yet
        self._slots: set[str] = set()  # queued or running jobs: a place each until they finish
        self._retries: dict[str, int] = {}  # jobs the worker loop failed to start, by attempts
        self._release_lock: Callable[[], None] = lambda: None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._release_lock = hold_jobs_lock(self.db, shared=False)  # recover takes every running job back
        self.recover()
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"unclip-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def recover(self) -> int:
        """Re-queue the jobs a previous run accepted but did not finish. A job still marked running was cut
        off by a crash or a kill (a shutdown puts running jobs back to queued): after MAX_ATTEMPTS starts it
        is failed and refunded instead of taking the server down again."""
        with self.db.session() as s:
            jobs = list(
                s.scalars(select(Job).where(Job.status.in_(("queued", "running"))).order_by(Job.created_at))
            )
            ids = []
            for job in jobs:
                if job.cancel_requested:  # cancelled while it ran, before the server stopped
                    finish(s, job.id, ("queued", "running"), "cancelled", cancel_error(job.cancel_requested))
                    continue
                if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
                    finish(s, job.id, ("running",), "failed", crashed_error(job.attempts))
                    log.warning("job %s failed after %d interrupted attempts", job.id, job.attempts)
                    continue
                move(s, job.id, ("queued", "running"), status="queued", worker=None)
                ids.append(job.id)
        for job_id in ids:
            with self._lock:
                self._handles[job_id] = Handle(job_id)
                self._slots.add(job_id)
            self._queue.put(job_id)
        if ids:
            log.info("re-queued %d unfinished job(s)", len(ids))
        return len(ids)

    def _cut_off_running(self) -> None:
        """After the grace: running jobs that requests wait for are cancelled and refunded, the others put
        back in the queue for the next start."""
        with self._lock:
            running = [h for h in self._handles.values() if h.status == "running"]
        for h in running:
            if h.waiters:
                h.shutdown = True
            else:
                h.requeue = True
            h.cancel.set()

    def stop(self, grace_s: float = 30.0) -> None:
        """Start no new job; let running ones finish for `grace_s` (counted from `drain` when it came first),
        then cancel and re-queue them."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = (self._draining if self._draining is not None else time.monotonic()) + grace_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            with self._lock:
                for h in self._handles.values():
                    if h.status == "running":
                        h.requeue = True
                        h.cancel.set()
            for t in self._threads:
                t.join(30.0)
        self._threads.clear()
        self._release_lock()

    # --- submitting --------------------------------------------------------------------------------------

    def reserve(self) -> None:
        """Take a place in the bounded queue or raise 503 (with Retry-After)."""
        with self._lock:
            if self._stopping.is_set() or self._draining is not None:
                raise ShuttingDown()
            if self._reserved + len(self._slots) >= self.queue_size:
                raise QueueFull()
            self._reserved += 1

    def release(self) -> None:
        with self._lock:
            self._reserved -= 1

    def _free(self, job_id: str) -> None:
        """The job finished (or will never run here): its place in the queue is free at once, not when a worker
        next takes its id off the queue."""
        with self._lock:
            self._slots.discard(job_id)
            self._retries.pop(job_id, None)

    def enqueue(self, job_id: str) -> Handle:
        """Queue a job whose row is committed and whose place was reserved."""
        h = Handle(job_id)
        with self._lock:
            prune_handles(self._handles)
            self._handles[job_id] = h
            self._reserved -= 1
            self._slots.add(job_id)
        self._queue.put(job_id)
        return h

    def handle(self, job_id: str) -> Handle | None:
        with self._lock:
            return self._handles.get(job_id)

    def depth(self) -> int:
        with self._lock:
            return self._reserved + len(self._slots)

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once (refunded), or ask a running one to stop."""
        h = self.handle(job_id)
        with self.db.session() as s:  # recorded: a restart before the engine's next step must not run it again
            won = cancel_row(s, job_id, "user")
        if won:
            self._free(job_id)
        if h:
            h.by_user = True
            if won:
                h.status = "cancelled"
                h.changed = time.monotonic()
            h.cancel.set()
            if h.status == "cancelled":
                h.done.set()

    # --- running -----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return  # queued jobs stay queued in the database and run after the restart
            if self._draining is not None:
                continue  # shutting down: start nothing new; it stays queued for the restart
            try:
                self._run(job_id)
            except Exception:  # the database, most likely: the job was not started; try it again shortly
                log.exception("job %s crashed the worker loop", job_id)
                self._retry(job_id)
            finally:
                h = self.handle(job_id)
                if h is None or h.status in TERMINAL:
                    self._free(job_id)

    def _complete(self, job: Job, token: str, out: Outcome, h: Handle) -> str:
        """Record the attempt's outcome, trying again while the database is away (the outcome and its images
        are in memory; the row stayed running and charged, and its request was answered "failed"). Returns
        the status the row has: one this attempt lost (taken over, cancelled elsewhere) is read back. A
        shutdown stops the tries: the row, still running, runs again after the restart."""
        tries = 0
        while True:
            try:
                status = self.runner.complete(job, token, out, h)
                if status is not None:
                    return status
                with self.db.session() as s:
                    row = s.get(Job, job.id)
                    return row.status if row is not None else "failed"
            except Exception:
                tries += 1
                log.exception("job %s could not be completed (try %d)", job.id, tries)
                if self._stopping.wait(backoff(tries)):
                    return "running"

    def _retry(self, job_id: str) -> None:
        """Queue again a job the worker loop could not start (the database, most likely), later each time, for
        as long as it is queued here: one that gave up stayed queued, charged, and held its place in the queue
        until a restart. The wait is not the worker's: other jobs run meanwhile."""
        h = self.handle(job_id)
        with self._lock:
            tries = self._retries[job_id] = self._retries.get(job_id, 0) + 1
        if h is None or h.status != "queued":
            return

        def again() -> None:
            if not self._stopping.is_set() and h.status == "queued":
                self._queue.put(job_id)

        timer = threading.Timer(backoff(tries), again)
        timer.daemon = True
        timer.start()

    def _run(self, job_id: str) -> None:
        h = self.handle(job_id) or Handle(job_id)
        while True:
            if h.status != "queued":  # in another worker's pass: wait until it ends there or is put back
                if h.done.wait(0.5) or h.status in TERMINAL:
                    return
                continue
            if h.cancel.is_set() and (h.by_user or not h.requeue):  # a shutdown's put-back stays queued
                with self.db.session() as s:
                    if finish(s, job_id, ("queued",), "cancelled", None):
                        h.status = "cancelled"
                        h.done.set()
                        self._free(job_id)
                        return
            if self._stopping.is_set() or self._draining is not None:
                return  # put back by a pass the shutdown stopped: it stays queued for the restart
            token = worker_token()
            job = self.runner.claim(job_id, token)
            if job is not None:
                break
            with self.db.session() as s:
                row = s.get(Job, job_id)
                status = row.status if row else "failed"
            if status in TERMINAL:  # cancelled or finished meanwhile
                if h.status not in TERMINAL:
                    h.status = status
                h.done.set()
                return
            # claimed into another worker's pass before that worker marked it running: the same wait as above
            if h.done.wait(0.5):
                return
        group = [(job, token, h)]
        if self.batch_images > 1:
            for other, other_token in self.runner.claim_companions(job, self.batch_images):
                group.append((other, other_token, self.handle(other.id) or Handle(other.id)))
        for _, _, gh in group:
            gh.status, gh.changed = "running", time.monotonic()
        outcomes = self.runner.execute_batch([j for j, _, _ in group], [gh for _, _, gh in group])
        for (j, tok, gh), out in zip(group, outcomes, strict=True):
            status = self._complete(j, tok, out, gh)
            gh.status, gh.changed = status, time.monotonic()
            if status != "queued":
                gh.done.set()
                self._free(j.id)
            elif gh is h and not h.requeue:  # its pass stopped for another job: it runs again now
                self._queue.put(job_id)
        # a job put back by a shutdown (requeue) runs after the restart; companions put back are still queued
