"""Jobs: status, progress as server-sent events, cancel, and your job list."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from unclip.service.auth import Principal, authenticate
from unclip.service.db import Job
from unclip.service.errors import invalid
from unclip.service.jobs import TERMINAL
from unclip.service.paging import newest_first
from unclip.service.routers.deps import base_url, services

STATUSES = ("queued", "running", *TERMINAL)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", summary="Your jobs, newest first")
def list_jobs(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    status: str | None = None,
    after: str | None = None,
    p: Principal = Depends(authenticate),
) -> dict[str, Any]:
    sv = services(request)
    with sv.db.session() as s:
        q = select(Job).where(Job.user_id == p.user_id)
        if status:
            if status not in STATUSES:
                raise invalid(f"Invalid 'status': expected one of {', '.join(STATUSES)}.", "status")
            q = q.where(Job.status == status)
        rows, more = newest_first(s, q, Job, p.user_id, after, limit)
    data = [sv.images.job_json(j, base_url(request)) for j in rows]
    return {"object": "list", "data": data, "has_more": more, "last_id": data[-1]["id"] if data else None}


@router.get("/{job_id}", summary="A job's status, progress and result")
def get_job(request: Request, job_id: str, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    sv = services(request)
    return sv.images.job_json(sv.images.job(p, job_id), base_url(request))


@router.post("/{job_id}/cancel", summary="Cancel a queued or running job (its credits are refunded)")
def cancel_job(request: Request, job_id: str, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    sv = services(request)
    sv.images.job(p, job_id)  # 404 unless it is the caller's
    sv.jobs.cancel(job_id)
    h = sv.jobs.handle(job_id)
    if h is not None and not h.done.is_set():  # running: it stops at its next step
        h.done.wait(5.0)
    return sv.images.job_json(sv.images.job(p, job_id), base_url(request))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/{job_id}/events",
    summary="Progress as server-sent events (progress …, then done)",
    response_class=StreamingResponse,
)
async def job_events(
    request: Request, job_id: str, p: Principal = Depends(authenticate)
) -> StreamingResponse:
    sv = services(request)
    job = await run_in_threadpool(sv.images.job, p, job_id)
    base = base_url(request)

    async def stream() -> AsyncIterator[str]:
        last: tuple[Any, ...] = ()
        ping = time.monotonic()
        current = job
        while True:
            h = sv.jobs.handle(job_id)
            status = h.status if h is not None else current.status
            state = (status, h.step if h else 0, h.total if h else 0)
            if state != last:
                last = state
                yield _sse("progress", {"id": job_id, "status": status, "step": state[1], "total": state[2]})
            if status in TERMINAL or h is None:
                current = await run_in_threadpool(sv.images.job, p, job_id)
                if current.status in TERMINAL or h is None:
                    yield _sse("done", sv.images.job_json(current, base))
                    return
            if time.monotonic() - ping > 15:
                ping = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.1)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
