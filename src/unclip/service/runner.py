"""One job's life on a worker, shared by the embedded queue (threads in the server) and the broker's workers
(`unclip worker` processes): claim the job's row, run the engine, then end the row. Every transition is a
compare-and-set on the row, so of two racing workers, or a worker and a cancel, exactly one wins; results are
stored and the job finished in one transaction, so a job is stored and charged once whatever dies when."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sqlalchemy import and_, or_, select, update

from unclip.service import credits
from unclip.service.db import Database, ImageRecord, Job, new_id, now
from unclip.service.engines import Cancelled, InvalidInput, ModelRegistry
from unclip.service.errors import APIError
from unclip.service.policy import encode
from unclip.service.storage import BlobStore

log = logging.getLogger("unclip.service.jobs")
TERMINAL = ("succeeded", "failed", "cancelled")
MAX_ATTEMPTS = 3  # starts of one job cut off by a crash before it is failed and refunded
SHUTDOWN_CANCELLED = (
    "The server is shutting down: your request was cancelled before it finished and its credits were refunded. "
    "Retry shortly."
)


class ShuttingDown(APIError):
    def __init__(
        self, message: str = "The server is shutting down and takes no new request; retry shortly."
    ) -> None:
        super().__init__(
            503, message, type="server_error", code="server_shutting_down", headers={"Retry-After": "10"}
        )


def cancel_error(asked: str | None) -> dict[str, Any] | None:
    """The error a job cancelled for `asked` (Job.cancel_requested: user | shutdown) ends with."""
    return ShuttingDown(SHUTDOWN_CANCELLED).body() if asked == "shutdown" else None


def crashed_error(attempts: int) -> dict[str, Any]:
    return APIError(
        500,
        f"The server stopped while running this job {attempts} times; it was not run again and its credits "
        "were refunded.",
        type="server_error",
        code="job_crashed",
    ).body()


def lease_lapsed(t: float) -> Any:
    """Under workers with leases: a running job's lease ran out, or it has none (the server without a broker,
    which sets none, was stopped while it ran: nothing else would ever take it up)."""
    return or_(Job.lease_until.is_(None), Job.lease_until < t)


def cancel_row(s: Any, job_id: str, asked: str, error: dict[str, Any] | None = None) -> bool:
    """Cancel a queued job at once (True: its charge is refunded), or record on a running one that `asked`
    ("user", "shutdown") wants it stopped. The row is locked first (PostgreSQL; SQLite's first write takes the
    database): an update that matches no row takes no lock, and a worker putting the job back in the queue
    between the two moves would make both miss."""
    s.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    if finish(s, job_id, ("queued",), "cancelled", error):
        return True
    move(s, job_id, ("running",), cancel_requested=asked)
    return False


def move(s: Any, job_id: str, from_: tuple[str, ...], *extra: Any, **values: Any) -> bool:
    """Change a job's row only if its status is still one of `from_` (and `extra` conditions hold). Of two
    racing transitions exactly one wins; the other changes nothing and gets False."""
    done = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(from_), *extra)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return done.rowcount == 1


def finish(
    s: Any,
    job_id: str,
    from_: tuple[str, ...],
    status: str,
    error: dict[str, Any] | None,
    *extra: Any,
    **values: Any,
) -> bool:
    """End a job, and refund it when it failed or was cancelled, only if this call made the transition."""
    values.setdefault("lease_until", None)
    if not move(s, job_id, from_, *extra, status=status, error=error, finished_at=now(), **values):
        return False
    job = s.get(Job, job_id, populate_existing=True)
    if status in ("failed", "cancelled") and job.cost:
        credits.refund(s, job.user_id, job.cost, job.id)
    return True


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


def input_shas(params: dict[str, Any]) -> set[str]:
    """The stored images a job's engine call reads (its image and mask, a blend's images)."""
    shas = {params[k] for k in ("image", "mask") if params.get(k)}
    return shas | {it["image"] for it in params.get("items") or () if it.get("image")}


INPUT_WITHHELD = APIError(
    410,
    "An image this request reads was withheld after a review under the content policy while the request waited "
    "in the queue; it failed and its credits were refunded.",
    param="image",
    code="image_withheld",
)


def _batch_key(job: Job) -> tuple[Any, ...]:
    """What must be equal for generations to share one pass."""
    p = job.params
    return (job.model, p.get("size"), p.get("steps"), p.get("guidance"), p.get("negative_prompt") or "")


@dataclass
class Handle:
    """A job as the process that serves or runs it sees it: live progress, a cancel flag, and `done`."""

    job_id: str
    done: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    requeue: bool = False  # cancelled to run again later (shutdown), not for good
    by_user: bool = False  # the user cancelled it: a shutdown that comes after does not put it back
    step: int = 0
    total: int = 0
    status: str = "queued"
    changed: float = field(default_factory=time.monotonic)
    waiters: int = 0  # requests waiting for this job's result (synchronous calls)
    shutdown: bool = False  # cancelled because the server is shutting down


KEEP_DONE_S = 60.0  # a finished job's handle stays this long (late readers of its progress), then goes


def prune_handles(handles: dict[str, Handle]) -> None:
    """Drop the handles of jobs finished more than KEEP_DONE_S ago that no request waits for (the caller holds
    the lock that guards `handles`)."""
    t = time.monotonic()
    for job_id in [
        j for j, h in handles.items() if h.done.is_set() and not h.waiters and t - h.changed > KEEP_DONE_S
    ]:
        del handles[job_id]


@dataclass
class Outcome:
    status: str  # succeeded | failed | cancelled | queued (to run again)
    error: dict[str, Any] | None = None
    images: list[Image.Image] = field(default_factory=list)


def worker_token() -> str:
    """Names one attempt at one job: host, process and a random part (a stalled attempt of the same process
    that wakes up after its lease ran out cannot finish a job another attempt took over)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:10]}"


class JobRunner:
    """Runs jobs against `registry`'s engines. `lease_s`: how long a claimed job stays this worker's without a
    renewal (None: no expiry, for the embedded queue, whose restart re-queues running jobs)."""

    def __init__(
        self, db: Database, store: BlobStore, registry: ModelRegistry, *, lease_s: float | None = None
    ) -> None:
        self.db = db
        self.store = store
        self.registry = registry
        self.lease_s = lease_s

    def claim(self, job_id: str, token: str) -> Job | None:
        """Make the job this attempt's: queued → running, or take over a running job whose lease ran out (its
        worker died). None when it is not ours to run: finished, cancelled, or running elsewhere. A job cut
        off MAX_ATTEMPTS times is failed and refunded instead of taking another worker down."""
        t = now()
        lapsed = (lease_lapsed(t),) if self.lease_s else (Job.lease_until.is_not(None), Job.lease_until < t)
        expired = and_(Job.status == "running", *lapsed)
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            if job.status == "running" and job.cancel_requested:  # asked to stop, then its worker died
                finish(s, job_id, ("running",), "cancelled", cancel_error(job.cancel_requested), *lapsed)
                return None
            if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
                if finish(s, job_id, ("running",), "failed", crashed_error(job.attempts), *lapsed):
                    log.warning("job %s failed after %d interrupted attempts", job_id, job.attempts)
                return None
            won = s.execute(
                update(Job)
                .where(Job.id == job_id, or_(Job.status == "queued", expired))
                .values(
                    status="running",
                    worker=token,
                    started_at=t,
                    attempts=Job.attempts + 1,
                    lease_until=t + self.lease_s if self.lease_s else None,
                )
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:
                return None
            return s.get(Job, job_id, populate_existing=True)

    def execute(self, job: Job, h: Handle) -> Outcome:
        """Run the engine for a claimed job, reporting progress into `h`; `h.cancel` stops it."""

        def progress(step: int, total: int) -> None:
            h.step, h.total, h.changed = int(step), int(total), time.monotonic()
            if h.cancel.is_set():
                raise Cancelled()

        try:
            if job.cancel_requested or h.cancel.is_set():
                raise Cancelled()
            if self._input_withheld(job):
                return Outcome("failed", INPUT_WITHHELD.body())
            engine = self.registry.get(job.model)
            return Outcome(
                "succeeded", images=run_engine(engine, job, self.store.open_image, progress, h.cancel)
            )
        except Cancelled:
            return self._stopped(job, h)
        except InvalidInput as exc:  # the engine refused a parameter: 400 naming it
            message = getattr(exc, "message", None) or str(exc)
            return Outcome(
                "failed",
                APIError(400, message, param=getattr(exc, "param", None), code="invalid_value").body(),
            )
        except Exception:
            log.exception("job %s failed", job.id)
            return Outcome(
                "failed",
                APIError(
                    500, "The server had an error while processing your request.", type="server_error"
                ).body(),
            )

    def _input_withheld(self, job: Job) -> bool:
        """Whether an image the job reads was withheld after a review since the job was queued."""
        shas = input_shas(job.params)
        if not shas:
            return False
        withheld = ImageRecord.sha256.in_(shas), ImageRecord.withheld_at.is_not(None)
        with self.db.session() as s:
            return s.scalar(select(ImageRecord.id).where(*withheld).limit(1)) is not None

    @staticmethod
    def _stopped(job: Job, h: Handle) -> Outcome:
        if h.by_user or job.cancel_requested == "user":
            return Outcome("cancelled")
        shutdown = h.shutdown or job.cancel_requested == "shutdown"  # a waiting request is told: refunded
        if h.requeue and not shutdown:  # put back to run after the restart
            return Outcome("queued")
        return Outcome("cancelled", cancel_error("shutdown") if shutdown else None)

    # --- batches: compatible queued generations in one pass of each model ------------------------------

    def claim_companions(self, job: Job, max_images: int) -> list[tuple[Job, str]]:
        """Claim queued generations that can share `job`'s pass (same model, size and settings), oldest first,
        up to `max_images` images in all. Each gets its own attempt token; their messages, when they come,
        find them taken and do nothing."""
        room = max_images - int(job.params.get("n") or 1)
        if job.kind != "generation" or room <= 0:
            return []
        try:
            engine = self.registry.get(job.model)
        except Exception:  # the model does not load: `execute` fails the job and refunds it
            return []
        if not hasattr(engine, "generate_batch"):
            return []  # an engine that runs one request at a time
        out: list[tuple[Job, str]] = []
        try:
            with self.db.session() as s:
                candidates = list(
                    s.scalars(
                        select(Job)
                        .where(
                            Job.status == "queued",
                            Job.kind == "generation",
                            Job.model == job.model,
                            Job.id != job.id,
                        )
                        .order_by(Job.created_at)
                        .limit(64)
                    )
                )
            for other in candidates:
                n = int(other.params.get("n") or 1)
                if n > room or _batch_key(other) != _batch_key(job):
                    continue
                token = worker_token()
                claimed = self.claim(other.id, token)
                if claimed is not None:
                    out.append((claimed, token))
                    room -= n
                    if room <= 0:
                        break
        except Exception:  # companions are a bonus: `job`, already claimed, runs with those taken so far
            log.exception("looking for jobs to batch with %s", job.id)
        return out

    def execute_batch(self, jobs: list[Job], hs: list[Handle]) -> list[Outcome]:
        """`execute` for compatible generations claimed together (see `claim_companions`), in one engine call.
        A cancel stops the pass: the cancelled jobs end, the others go back to the queue. A pass that fails is
        run again job by job, so that each job gets its own outcome."""
        if len(jobs) == 1:
            return [self.execute(jobs[0], hs[0])]
        asked = [bool(j.cancel_requested) or h.cancel.is_set() for j, h in zip(jobs, hs, strict=True)]
        if any(asked):  # a cancel that came before the pass (one for a job put back by a shutdown, say)
            keep = [i for i, a in enumerate(asked) if not a]
            rest = iter(self.execute_batch([jobs[i] for i in keep], [hs[i] for i in keep]) if keep else [])
            return [self._stopped(j, h) if a else next(rest) for j, h, a in zip(jobs, hs, asked, strict=True)]

        def progress(step: int, total: int) -> None:
            for h in hs:
                h.step, h.total, h.changed = int(step), int(total), time.monotonic()
            if any(h.cancel.is_set() for h in hs):
                raise Cancelled()

        first = jobs[0].params
        options = {k: first[k] for k in ("steps", "guidance") if first.get(k) is not None}  # guidance 0 too
        if first.get("negative_prompt"):
            options["negative_prompt"] = first["negative_prompt"]
        try:
            engine = self.registry.get(jobs[0].model)
            results = engine.generate_batch(
                [j.params["prompt"] for j in jobs],
                [int(j.params.get("n") or 1) for j in jobs],
                [j.params.get("seed") for j in jobs],
                size=_size(first["size"]),
                progress=progress,
                **options,
            )
            return [Outcome("succeeded", images=list(images)) for images in results]
        except Cancelled:
            return [
                self._stopped(j, h) if h.cancel.is_set() else Outcome("queued")
                for j, h in zip(jobs, hs, strict=True)
            ]
        except Exception:
            log.warning("a pass of %d jobs failed; running them one by one", len(jobs), exc_info=True)
            return [self.execute(j, h) for j, h in zip(jobs, hs, strict=True)]

    def complete(self, job: Job, token: str, out: Outcome, h: Handle) -> str | None:
        """End the attempt: results stored and the row finished in one transaction (or the job put back in the
        queue), only while this attempt still holds the job. Returns the status recorded, or None when it lost
        the job (taken over, cancelled).

        A job cancelled after its last step (a request that timed out, or whose client left, while the images
        were decoded or encoded) ends cancelled and refunded, as its request was told, unless a shutdown cut
        it off (then the finished images are kept). Images that cannot be stored (a full disk, a database
        error) fail the job, refunded, rather than leave it running and charged."""
        def cancelled_locally() -> bool:  # this process was told to stop it (a shutdown keeps finished images)
            return out.status == "succeeded" and h.cancel.is_set() and (h.by_user or not (h.requeue or h.shutdown))

        if cancelled_locally():
            out = Outcome("cancelled")
        ours = (Job.worker == token,)
        progress = {"progress_step": h.step, "progress_total": h.total}
        try:
            records = self._encode(job, out.images) if out.status == "succeeded" else []
            if cancelled_locally():  # asked while the images were encoded and stored (seconds at 1024 px)
                out, records = Outcome("cancelled"), []
            with self.db.session() as s:
                if out.status in ("queued", "succeeded"):
                    # put back (not cut off: the attempt does not count towards MAX_ATTEMPTS, crashes do), or
                    # finished, only if nobody asked for a cancel: its request was told cancelled and refunded
                    unasked = (*ours, Job.cancel_requested.is_(None))
                    if out.status == "queued":
                        back = {"status": "queued", "worker": None, "lease_until": None, "attempts": Job.attempts - 1}
                        if move(s, job.id, ("running",), *unasked, **back, **progress):
                            return "queued"
                    else:
                        done = {"result": {"images": [r.id for r in records]}, **progress}
                        if finish(s, job.id, ("running",), "succeeded", None, *unasked, **done):
                            s.add_all(records)
                            return "succeeded"
                    # a cancel recorded by another process since this attempt last looked: it ends here
                    asked = s.scalar(select(Job.cancel_requested).where(Job.id == job.id, *ours))
                    if asked is None:
                        return None
                    out = Outcome("cancelled", cancel_error(asked))
                if not finish(s, job.id, ("running",), out.status, out.error, *ours, **progress):
                    return None
                return out.status
        except Exception:
            if out.status != "succeeded":
                raise
            log.exception("job %s: its images could not be stored", job.id)
        error = APIError(
            500,
            "The images were made but could not be stored; the job failed and its credits were refunded.",
            type="server_error",
            code="storage_error",
        ).body()
        with self.db.session() as s:
            return "failed" if finish(s, job.id, ("running",), "failed", error, *ours, **progress) else None

    def _encode(self, job: Job, images: list[Image.Image]) -> list[ImageRecord]:
        """Encode each image with provenance (signed metadata + watermark) and store it (content-addressed: an
        attempt that loses its job leaves only unreferenced files); the rows are added by `complete`."""
        items = [str(it["prompt"]) for it in job.params.get("items") or () if it.get("prompt")]
        prompt = str(job.params.get("prompt") or ", ".join(items))  # a blend's prompts, for its reviewers
        request_id = job.params.get("request_id") or job.id
        records = []
        for i, img in enumerate(images):
            info = img.info.get("unclip") if isinstance(img.info.get("unclip"), dict) else {}
            meta = {
                "model": job.model,
                "seed": info.get("seed", job.params.get("seed")),
                "request_id": request_id,
                "job_id": job.id,
                "kind": job.kind,
                "index": i,
            }  # + "created" (UTC), "size", "watermark" and the HMAC "signature", added by encode_png
            sha = self.store.put(encode(img, meta))  # on disk (fsync) before the row that points to it
            records.append(
                ImageRecord(
                    id=new_id("img"),
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
        return records
