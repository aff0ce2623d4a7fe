"""The API's side of a deployment with a broker (`unclip serve --broker redis://…`): the job interface of the
embedded queue (`jobs.JobManager`), with the jobs run by `unclip worker` processes. Handles mirror the jobs'
rows (polled), cancel requests travel through the row, and a sweeper sends again the message of any job whose
message may be lost: the broker restarted, this process died between its commit and its send, or a worker died
holding the job (its lease ran out)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from unclip.service.db import Database, Job, hold_jobs_lock, now
from unclip.service.dispatch import Dispatcher
from unclip.service.jobs import JobQueue, QueueFull
from unclip.service.runner import (
    SHUTDOWN_CANCELLED,
    TERMINAL,
    Handle,
    ShuttingDown,
    cancel_row,
    lease_lapsed,
    prune_handles,
)

log = logging.getLogger("unclip.service.jobs")


class RemoteJobs(JobQueue):
    workers = 0  # no engine in this process

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        *,
        queue_size: int = 16,
        poll_s: float = 0.1,
        sweep_s: float = 5.0,
        redispatch_s: float = 60.0,
    ) -> None:
        super().__init__(db, queue_size)
        self.dispatcher = dispatcher
        self.poll_s = poll_s
        self.sweep_s = sweep_s
        self.redispatch_s = redispatch_s
        self._reserved = 0  # places taken by submissions whose rows are not committed yet
        self._threads: list[threading.Thread] = []
        self._release_lock: Callable[[], None] = lambda: None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._release_lock = hold_jobs_lock(self.db, shared=True)  # not beside a server without a broker
        for every, work, name in (
            (self.poll_s, self.refresh, "unclip-job-poller"),
            (self.sweep_s, self.sweep, "unclip-job-sweeper"),
        ):
            t = threading.Thread(target=self._repeat, args=(every, work), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop polling and sweeping. Queued and running jobs stay with the workers."""
        self._stopping.set()
        for t in self._threads:
            t.join(5.0)
        self._threads.clear()
        self.dispatcher.close()
        self._release_lock()

    def _cut_off_running(self) -> None:
        """After the grace: the jobs that requests of this process wait for are stopped and refunded (503);
        async jobs go on in the workers."""
        with self._lock:
            waited = [h for h in self._handles.values() if h.waiters and not h.done.is_set()]
        for h in waited:
            h.shutdown = True
            with self.db.session() as s:
                cancel_row(s, h.job_id, "shutdown", ShuttingDown(SHUTDOWN_CANCELLED).body())

    # --- submitting --------------------------------------------------------------------------------------

    def reserve(self) -> None:
        """Take a place among the unfinished jobs of all workers (queue_size in all) or raise 503."""
        with self._lock:
            if self._stopping.is_set() or self._draining is not None:
                raise ShuttingDown()
            if self.depth() + self._reserved >= self.queue_size:
                raise QueueFull()
            self._reserved += 1

    def release(self) -> None:
        with self._lock:
            self._reserved -= 1

    def enqueue(self, job_id: str) -> Handle:
        """Send a job whose row is committed and whose place was reserved."""
        h = Handle(job_id)
        with self._lock:
            self._handles[job_id] = h
            self._reserved -= 1
        self._dispatch([job_id])
        return h

    def _dispatch(self, job_ids: list[str]) -> None:
        sent = []
        try:
            for job_id in job_ids:
                self.dispatcher.send(job_id)
                sent.append(job_id)
        except Exception as exc:  # the broker is down: the rows stay queued and the sweeper sends them later
            log.warning(
                "the broker is unreachable (%s); %d job(s) wait to be sent", exc, len(job_ids) - len(sent)
            )
        if sent:
            try:
                with self.db.session() as s:
                    s.execute(update(Job).where(Job.id.in_(sent)).values(dispatched_at=now()))
            except Exception as exc:  # a job taken and charged is not answered 500 for a bookkeeping note:
                # without it, the sweeper sends the job again later, and a second message is harmless
                log.warning("could not note %d job(s) as sent (%s); the sweeper sends them again", len(sent), exc)

    def depth(self) -> int:
        """Accepted and unfinished jobs, in every worker (the database's count)."""
        with self.db.session() as s:
            return int(
                s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(("queued", "running"))))
                or 0
            )

    # --- watching and cancelling -------------------------------------------------------------------------

    def handle(self, job_id: str) -> Handle | None:
        """The job's handle; one is made for an unfinished job that another process accepted."""
        with self._lock:
            h = self._handles.get(job_id)
        if h is not None:
            return h
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.status in TERMINAL:
                return None
            h = Handle(job_id, status=job.status, step=job.progress_step, total=job.progress_total)
        with self._lock:
            return self._handles.setdefault(job_id, h)

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once (refunded), or ask the worker running it to stop."""
        h = self.handle(job_id)
        with self.db.session() as s:
            won = cancel_row(s, job_id, "user")
        if h is not None:
            h.cancel.set()
            if won:
                h.status, h.changed = "cancelled", time.monotonic()
                h.done.set()

    # --- background threads ------------------------------------------------------------------------------

    def _repeat(self, every: float, work: Any) -> None:
        while not self._stopping.wait(every):
            try:
                work()
            except Exception:
                log.exception("%s failed", work.__name__)

    def refresh(self) -> None:
        """Mirror the rows of the jobs this process watches into their handles."""
        t = time.monotonic()
        with self._lock:
            prune_handles(self._handles)
            watched = {job_id: h for job_id, h in self._handles.items() if not h.done.is_set()}
        if not watched:
            return
        with self.db.session() as s:
            rows = s.execute(
                select(Job.id, Job.status, Job.progress_step, Job.progress_total, Job.error).where(
                    Job.id.in_(list(watched))
                )
            ).all()
        for job_id, status, step, total, error in rows:
            h = watched[job_id]
            if (status, step, total) != (h.status, h.step, h.total):
                h.status, h.step, h.total, h.changed = status, step, total, t
            if status in TERMINAL:
                h.shutdown = (
                    h.shutdown or ((error or {}).get("error") or {}).get("code") == "server_shutting_down"
                )
                h.done.set()

    def sweep(self) -> int:
        """Send again the jobs whose message may be lost: queued and not sent for `redispatch_s`, or running on a
        worker whose lease ran out. Returns how many."""
        t = now()
        stale = or_(Job.dispatched_at.is_(None), Job.dispatched_at < t - self.redispatch_s)
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(Job.id)
                    .where(
                        Job.created_at < t - 1.0,  # not one whose submit is sending it right now
                        or_(
                            and_(Job.status == "queued", stale),
                            and_(
                                Job.status == "running",
                                lease_lapsed(t),
                                # not sent since it lapsed
                                or_(stale, Job.lease_until.is_(None), Job.dispatched_at < Job.lease_until),
                            ),
                        ),
                    )
                    .order_by(Job.created_at)
                    .limit(500)
                )
            )
        if ids:
            log.info("sending %d job(s) again to the workers", len(ids))
            self._dispatch(ids)
        return len(ids)
