"""Moderations in OpenAI's shape (every OpenAI category key, plus `political` and `real-people`), answered by
unclip's content policy through `unclip.safety.moderation`."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict

from unclip.safety.moderation import MODEL_NAME, moderation_result
from unclip.service.auth import Principal
from unclip.service.errors import RequestBody, invalid
from unclip.service.routers.deps import admitted, services

router = APIRouter(prefix="/v1", tags=["moderations"])
MAX_INPUTS = 32  # one request may not buy unbounded policy time: other users' generations share the CPU
MAX_CHARS = 32_000  # all inputs together


class ModerationRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    input: str | list[str] | list[dict[str, Any]]
    model: str | None = None


def _texts(value: str | list[Any]) -> list[str]:
    out = []
    for item in [value] if isinstance(value, str) else value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            out.append(item["text"])
        else:
            raise invalid("Only text inputs are supported by this server's moderation model.", "input")
    if len(out) > MAX_INPUTS:
        raise invalid(
            f"Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, but got an "
            f"array with length {len(out)} instead.",
            "input",
            "array_above_max_length",
        )
    total = sum(len(t) for t in out)
    if total > MAX_CHARS:
        raise invalid(
            f"Invalid 'input': {total} characters in all; the limit is {MAX_CHARS} per request.",
            "input",
            "string_above_max_length",
        )
    return out


@router.post(
    "/moderations", summary="Classify text with the server's content policy (OpenAI createModeration)"
)
async def moderations(
    request: Request, body: ModerationRequest, p: Principal = Depends(admitted)
) -> dict[str, Any]:
    sv = services(request)
    texts = _texts(body.input)
    await run_in_threadpool(sv.images.throttle, p)  # repeat offenders probe the policy here too
    results = [moderation_result(await run_in_threadpool(sv.policy.check, t)) for t in texts]
    return {"id": f"modr-{secrets.token_hex(12)}", "model": MODEL_NAME, "results": results}
