"""The job queue: a bounded number of accepted jobs, worker thread(s) that call the engine, cancellation,
progress, and a graceful shutdown that never loses an accepted job (the database is the source of truth)."""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sqlalchemy import select, update

from unclip.service import credits
from unclip.service.db import Database, ImageRecord, Job, now
from unclip.service.engines import Cancelled, InvalidInput, ModelRegistry
from unclip.service.errors import APIError
from unclip.service.policy import encode
from unclip.service.storage import BlobStore

log = logging.getLogger("unclip.service.jobs")
TERMINAL = ("succeeded", "failed", "cancelled")
SHUTDOWN_CANCELLED = (
    "The server is shutting down: your request was cancelled before it finished and its credits were refunded. "
    "Retry shortly."
)
MAX_ATTEMPTS = 3  # starts of one job cut off by a crash before it is failed and refunded


@dataclass
class Handle:
    job_id: str
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    requeue: bool = False
    step: int = 0
    total: int = 0
    status: str = "queued"
    changed: float = field(default_factory=time.monotonic)
    waiters: int = 0  # requests waiting for this job's result (synchronous calls)
    shutdown: bool = False  # cancelled because the server is shutting down


class QueueFull(APIError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "The server is overloaded with other requests; retry shortly.",
            type="server_error",
            code="queue_full",
            headers={"Retry-After": "5"},
        )


class ShuttingDown(APIError):
    def __init__(
        self, message: str = "The server is shutting down and takes no new request; retry shortly."
    ) -> None:
        super().__init__(
            503, message, type="server_error", code="server_shutting_down", headers={"Retry-After": "10"}
        )


def _size(value: str) -> int:
    return int(value.split("x", 1)[0])


def run_engine(
    engine: Any,
    job: Job,
    load: Callable[[str], Image.Image],
    progress: Callable[[int, int], None],
    cancel: threading.Event,
) -> list[Image.Image]:
    """Call the engine for one job. `load(sha)` opens a stored input image."""
    p = dict(job.params)
    extra = {k: p[k] for k in ("seed", "steps", "guidance") if p.get(k) is not None}
    common = {"progress": progress, "cancel": cancel, **extra}
    kind = job.kind
    if kind == "generation":
        if p.get("negative_prompt"):
            common["negative_prompt"] = p["negative_prompt"]
        return list(engine.generate(p["prompt"], n=p["n"], size=_size(p["size"]), **common))
    if kind == "edit":
        mask = load(p["mask"]) if p.get("mask") else None
        return list(
            engine.edit(load(p["image"]), p["prompt"], mask=mask, n=p["n"], size=_size(p["size"]), **common)
        )
    if kind == "variation":
        return list(engine.vary(load(p["image"]), n=p["n"], size=_size(p["size"]), **common))
    if kind == "outpaint":
        sides = {k: int(p.get(k) or 0) for k in ("left", "right", "top", "bottom")}
        return [engine.outpaint(load(p["image"]), p["prompt"], **sides, **common)]
    if kind == "blend":
        items = [
            (load(it["image"]) if it.get("image") else it["prompt"], float(it.get("weight", 1.0)))
            for it in p["items"]
        ]
        return list(engine.blend(items, n=p["n"], size=_size(p["size"]), **common))
    if kind == "upscale":
        return [engine.upscale(load(p["image"]), progress=progress, cancel=cancel)]
    raise ValueError(f"unknown job kind {kind!r}")


class JobManager:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        registry: ModelRegistry,
        *,
        workers: int = 1,
        queue_size: int = 16,
    ) -> None:
        self.db = db
        self.store = store
        self.registry = registry
        self.workers = max(1, workers)
        self.queue_size = queue_size
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._handles: dict[str, Handle] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._draining: float | None = None  # monotonic time the shutdown began
        self._pending = 0  # accepted and not finished

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
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
                if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
                    error = APIError(
                        500,
                        f"The server stopped while running this job {job.attempts} times; it was not run again "
                        "and its credits were refunded.",
                        type="server_error",
                        code="job_crashed",
                    ).body()
                    self._finish(s, job.id, ("running",), "failed", error)
                    log.warning("job %s failed after %d interrupted attempts", job.id, job.attempts)
                    continue
                self._move(s, job.id, ("queued", "running"), status="queued")
                ids.append(job.id)
        for job_id in ids:
            with self._lock:
                self._handles[job_id] = Handle(job_id)
                self._pending += 1
            self._queue.put(job_id)
        if ids:
            log.info("re-queued %d unfinished job(s)", len(ids))
        return len(ids)

    def drain(self, grace_s: float = 30.0) -> None:
        """The server is shutting down (SIGTERM): accept no new job and start none. A queued job that a request
        is waiting for is cancelled and refunded now, and the request answered 503, so that the client's retry
        is not charged twice; a queued job nobody waits for (an async one) stays queued for the next start.
        Running jobs get `grace_s` to finish; then those that requests wait for are cancelled and refunded,
        the others put back in the queue."""
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

    def cancel_for_shutdown(self, h: Handle) -> None:
        """Cancel and refund a queued job whose request waits, answering it 503 (see `drain`)."""
        with self.db.session() as s:
            won = self._finish(s, h.job_id, ("queued",), "cancelled", ShuttingDown(SHUTDOWN_CANCELLED).body())
        if won:
            h.status, h.shutdown, h.changed = "cancelled", True, time.monotonic()
            h.done.set()

    def _cut_off_running(self) -> None:
        with self._lock:
            running = [h for h in self._handles.values() if h.status == "running"]
        for h in running:
            if h.waiters:
                h.shutdown = True
            else:
                h.requeue = True
            h.cancel.set()

    @property
    def draining(self) -> bool:
        return self._draining is not None

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

    # --- submitting --------------------------------------------------------------------------------------

    def reserve(self) -> None:
        """Take a place in the bounded queue or raise 503 (with Retry-After)."""
        with self._lock:
            if self._stopping.is_set() or self._draining is not None:
                raise ShuttingDown()
            if self._pending >= self.queue_size:
                raise QueueFull()
            self._pending += 1

    def release(self) -> None:
        with self._lock:
            self._pending -= 1

    def enqueue(self, job_id: str) -> Handle:
        """Queue a job whose row is committed and whose place was reserved."""
        h = Handle(job_id)
        with self._lock:
            self._handles[job_id] = h
        self._queue.put(job_id)
        return h

    def handle(self, job_id: str) -> Handle | None:
        with self._lock:
            return self._handles.get(job_id)

    def depth(self) -> int:
        with self._lock:
            return self._pending

    def cancel(self, job_id: str) -> None:
        """Cancel a queued job at once (refunded), or ask a running one to stop."""
        h = self.handle(job_id)
        with self.db.session() as s:
            won = self._finish(s, job_id, ("queued",), "cancelled", error=None)
        if h:
            if won:
                h.status = "cancelled"
                h.changed = time.monotonic()
            h.cancel.set()
            if h.status == "cancelled":
                h.done.set()

    # --- running -----------------------------------------------------------------------------------------

    @staticmethod
    def _move(s: Any, job_id: str, from_: tuple[str, ...], **values: Any) -> bool:
        """Change a job's row only if its status is still one of `from_` (compare and set). Of two racing
        transitions exactly one wins; the other changes nothing and gets False."""
        done = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(from_))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return done.rowcount == 1

    def _finish(
        self,
        s: Any,
        job_id: str,
        from_: tuple[str, ...],
        status: str,
        error: dict[str, Any] | None,
        **values: Any,
    ) -> bool:
        """End a job, and refund it when it failed or was cancelled, only if this call made the transition."""
        if not self._move(s, job_id, from_, status=status, error=error, finished_at=now(), **values):
            return False
        job = s.get(Job, job_id, populate_existing=True)
        if status in ("failed", "cancelled") and job.cost:
            credits.refund(s, job.user_id, job.cost, job.id)
        return True

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return  # queued jobs stay queued in the database and run after the restart
            if self._draining is not None:
                continue  # shutting down: start nothing new; it stays queued for the restart
            try:
                self._run(job_id)
            except Exception:
                log.exception("job %s crashed the worker loop", job_id)
            finally:
                with self._lock:
                    h = self._handles.get(job_id)
                    if h is None or h.status in TERMINAL:
                        self._pending -= 1

    def _load(self, sha: str) -> Image.Image:
        img = Image.open(io.BytesIO(self.store.get(sha)))
        img.load()
        return img

    def _run(self, job_id: str) -> None:
        h = self.handle(job_id) or Handle(job_id)
        with self.db.session() as s:
            if h.cancel.is_set() and self._finish(s, job_id, ("queued",), "cancelled", None):
                h.status = "cancelled"
                h.done.set()
                return
            started = self._move(
                s, job_id, ("queued",), status="running", started_at=now(), attempts=Job.attempts + 1
            )
            job = s.get(Job, job_id, populate_existing=True)
            if not started:
                h.status = job.status if job else "failed"
                h.done.set()
                return
        h.status = "running"
        h.changed = time.monotonic()

        def progress(step: int, total: int) -> None:
            h.step, h.total, h.changed = int(step), int(total), time.monotonic()
            if h.cancel.is_set():
                raise Cancelled()

        status, error, result = "failed", None, None
        try:
            engine = self.registry.get(job.model)
            images = run_engine(engine, job, self._load, progress, h.cancel)
            ids = self._store_results(job, images)
            status, result = "succeeded", {"images": ids}
        except Cancelled:
            status = "queued" if h.requeue else "cancelled"
            if h.shutdown:
                error = ShuttingDown(SHUTDOWN_CANCELLED).body()
        except InvalidInput as exc:  # the engine refused a parameter: 400 naming it
            message = getattr(exc, "message", None) or str(exc)
            error = APIError(400, message, param=getattr(exc, "param", None), code="invalid_value").body()
        except Exception:
            log.exception("job %s failed", job_id)
            error = APIError(
                500, "The server had an error while processing your request.", type="server_error"
            ).body()
        with self.db.session() as s:
            progress_done = {"progress_step": h.step, "progress_total": h.total}
            if status == "queued":  # interrupted by shutdown: runs again after the restart
                self._move(s, job_id, ("running",), status="queued", **progress_done)
            else:
                self._finish(s, job_id, ("running",), status, error, result=result, **progress_done)
        h.status = status
        h.changed = time.monotonic()
        if status != "queued":
            h.done.set()

    def _store_results(self, job: Job, images: list[Image.Image]) -> list[str]:
        """Encode each image with provenance (signed metadata + watermark), store it, then add its row."""
        prompt = str(job.params.get("prompt") or "")
        request_id = job.params.get("request_id") or job.id
        records = []
        for i, img in enumerate(images):
            info = img.info.get("unclip") if isinstance(img.info.get("unclip"), dict) else {}
            seed = info.get("seed", job.params.get("seed"))
            meta = {
                "model": job.model,
                "seed": seed,
                "request_id": request_id,
                "job_id": job.id,
                "kind": job.kind,
                "index": i,
            }  # + "created" (UTC), "size", "watermark" and the HMAC "signature", added by encode_png
            sha = self.store.put(encode(img, meta))  # on disk (fsync) before the row that points to it
            records.append(
                ImageRecord(
                    user_id=job.user_id,
                    job_id=job.id,
                    sha256=sha,
                    kind=job.kind,
                    model=job.model,
                    prompt=prompt,
                    width=img.width,
                    height=img.height,
                )
            )
        with self.db.session() as s:
            s.add_all(records)
            s.flush()
            return [r.id for r in records]
