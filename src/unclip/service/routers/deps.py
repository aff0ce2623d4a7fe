"""Shared route helpers: services, the caller, and waiting for a job."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from unclip.service.auth import Principal, authenticate
from unclip.service.errors import APIError
from unclip.service.jobs import ShuttingDown

CANCEL_WAIT_S = 10.0  # how long a timed-out request waits for its job to stop (a step, or storing its images)
ROW_POLL_S = 0.25  # how often a request reads the row of a job this process no longer follows


def services(request: Request) -> Any:
    return request.app.state.services


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def admitted(request: Request, p: Principal = Depends(authenticate)) -> Principal:
    """The caller, past the rate limit and account checks (for endpoints that cost compute). The answer,
    a 429 included, carries the key's x-ratelimit-* headers."""
    images = services(request).images
    try:
        images.admit(p)
    finally:
        request.state.response_headers = images.rate_headers(p)
    return p


def prefers_async(request: Request) -> bool:
    return "respond-async" in request.headers.get("prefer", "").lower()


async def respond(request: Request, p: Principal, job_id: str) -> JSONResponse:
    """202 with the job (`Prefer: respond-async`), or wait for it and answer like OpenAI."""
    sv = services(request)
    svc = sv.images
    if prefers_async(request):
        job = await run_in_threadpool(svc.job, p, job_id)
        return JSONResponse(
            svc.job_json(job, base_url(request)), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"}
        )
    handle = sv.jobs.handle(job_id)
    deadline = time.monotonic() + sv.settings.request_timeout_s
    if handle is not None:
        handle.waiters += 1
    try:
        await _wait(request, sv, handle, job_id, deadline)
    finally:
        if handle is not None:
            handle.waiters -= 1
    job = await run_in_threadpool(svc.job, p, job_id)
    while job.status in ("queued", "running"):
        # this process stopped following it (another server took it over, or its outcome could not be recorded
        # before a shutdown): the row says how it ends. Never answered "failed" while it may yet be charged.
        await _wait_row(request, sv, job_id, deadline)
        job = await run_in_threadpool(svc.job, p, job_id)
    if job.status == "succeeded":
        return JSONResponse(await run_in_threadpool(svc.images_response, job, base_url(request)))
    err = (job.error or {}).get("error") or {}
    if job.status == "cancelled" and err.get("code") == "server_shutting_down":
        raise ShuttingDown(err["message"])
    if job.status == "cancelled":  # not retried by OpenAI's SDKs (they retry 409): it would be charged again
        raise APIError(409, "The job was cancelled.", code="job_cancelled", headers={"x-should-retry": "false"})
    status = 400 if err.get("type") == "invalid_request_error" else 500
    if err.get("code") == "image_withheld":  # its input was withheld while it waited: as at the submission
        status = 410
    raise APIError(
        status,
        err.get("message", "The job failed."),
        type=err.get("type", "server_error"),
        param=err.get("param"),
        code=err.get("code"),
    )


async def _wait_row(request: Request, sv: Any, job_id: str, deadline: float) -> None:
    """A moment on a job this process has no live handle of; cancelled, as `_wait` does, when the request
    times out or the client goes away."""
    if time.monotonic() > deadline:
        await run_in_threadpool(sv.jobs.cancel, job_id)
        raise _timed_out()
    if await request.is_disconnected():
        await run_in_threadpool(sv.jobs.cancel, job_id)
        raise APIError(499, "Client closed the request.")
    await asyncio.sleep(ROW_POLL_S)


def _timed_out() -> APIError:
    return APIError(
        504,
        "The request timed out before the image was ready; the job was cancelled and its credits refunded.",
        type="server_error",
        code="timeout",
    )


async def _wait(request: Request, sv: Any, handle: Any, job_id: str, deadline: float) -> None:
    """Until the job is done; cancels it when the request times out or the client goes away."""
    next_check = 0.0
    while handle is not None and not handle.done.is_set():
        if sv.jobs.draining and handle.status == "queued":  # it came in just as the shutdown began
            await run_in_threadpool(sv.jobs.cancel_for_shutdown, handle)
            await asyncio.sleep(0.02)  # lost to a worker that claimed it: its handle says so in a moment
            continue
        now = time.monotonic()
        if now > deadline:
            await run_in_threadpool(sv.jobs.cancel, job_id)
            # a job past its last step ends cancelled at its next step or when its images are stored; one that
            # finished just before the cancel reached it is answered with its images (it was charged)
            await run_in_threadpool(handle.done.wait, CANCEL_WAIT_S)
            if handle.status == "succeeded":
                return
            raise _timed_out()
        if now > next_check:
            next_check = now + 0.5
            if await request.is_disconnected():
                await run_in_threadpool(sv.jobs.cancel, job_id)
                raise APIError(499, "Client closed the request.")
        await asyncio.sleep(0.02)
