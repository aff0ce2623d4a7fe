"""Admin endpoints: users (approve, roles, suspension, credits), keys, the content-policy audit log and the
review queue (refused requests and reported images, confirmed or overturned)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ConfigDict, Field
from sqlalchemy import select

from unclip.service import actions, credits, reviews
from unclip.service.auth import (
    NotWaitlisted,
    Principal,
    approve,
    authenticate,
    check_role,
    create_key,
    create_user,
    key_json,
    require_admin,
    set_access,
    user_json,
)
from unclip.service.credits import MAX_CREDITS
from unclip.service.db import ApiKey, AuditEvent, ImageRecord, User, now
from unclip.service.errors import APIError, RequestBody, invalid
from unclip.service.routers.deps import services
from unclip.service.settings import ROLES, STATUSES

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def admin_only(p: Principal = Depends(authenticate)) -> Principal:
    require_admin(p)
    return p


def _user(s: Any, user_id: str) -> User:
    user = s.get(User, user_id)
    if user is None:
        raise APIError(404, f"No user with id '{user_id}'.", param="user_id", code="user_not_found")
    return user


class NewUser(RequestBody):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    name: str = Field("", max_length=200)
    role: str = "member"


class UserPatch(RequestBody):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    status: str | None = None  # active | suspended
    credits_delta: int | None = Field(None, ge=-MAX_CREDITS, le=MAX_CREDITS)


class Approval(RequestBody):
    model_config = ConfigDict(extra="forbid")
    role: str = "member"


class NewKey(RequestBody):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", max_length=200)


@router.get("/users", summary="List users (optionally by role)")
def list_users(
    request: Request, role: str | None = None, _: Principal = Depends(admin_only)
) -> dict[str, Any]:
    with services(request).db.session() as s:
        q = select(User).order_by(User.created_at)
        if role:
            q = q.where(User.role == role)
        return {"object": "list", "data": [user_json(u) for u in s.scalars(q)]}


@router.post("/users", status_code=201, summary="Create a user and a first API key (shown once)")
def new_user(request: Request, body: NewUser, p: Principal = Depends(admin_only)) -> dict[str, Any]:
    try:
        role = check_role(body.role)
    except ValueError as exc:
        raise invalid(str(exc), "role") from None
    with services(request).db.session() as s:
        try:
            user = create_user(s, body.email, name=body.name, role=role)
        except ValueError as exc:
            raise invalid(str(exc), "email") from None
        key, text = create_key(s, user, name="admin-created")
        actions.record(s, p.user_id, "user.create", user, role=role)
        actions.record(s, p.user_id, "key.create", user, key_id=key.id)
        return {"user": user_json(user), "api_key": text}


@router.post("/users/{user_id}/approve", summary="Approve a waitlisted user")
def approve_user(
    request: Request, user_id: str, body: Approval | None = None, p: Principal = Depends(admin_only)
) -> dict[str, Any]:
    sv = services(request)
    with sv.db.session() as s:
        user = _user(s, user_id)
        before = user.role
        try:
            approve(s, user, (body or Approval()).role, keep_admin=True)
        except NotWaitlisted:  # a role change goes through PATCH
            raise APIError(
                409, f"The user is not on the waitlist (role: {before}).", param="user_id", code="not_waitlisted"
            ) from None
        except ValueError as exc:
            raise invalid(str(exc), "role") from None
        actions.record(s, p.user_id, "user.approve", user, before=before, after=user.role)
        credits.ensure_grant(s, user, sv.settings.credit_grants)
        return user_json(user)


@router.patch("/users/{user_id}", summary="Change role or status, or add/remove credits")
def patch_user(
    request: Request, user_id: str, body: UserPatch, p: Principal = Depends(admin_only)
) -> dict[str, Any]:
    sv = services(request)
    if body.role is not None and body.role not in ROLES:
        raise invalid(f"'role' must be one of {', '.join(ROLES)}.", "role")
    if body.status is not None and body.status not in STATUSES:
        raise invalid(f"'status' must be one of {', '.join(STATUSES)}.", "status")
    with sv.db.session() as s:
        user = _user(s, user_id)
        role, status = user.role, user.status
        if body.role is not None or body.status is not None:
            set_access(s, user, role=body.role, status=body.status)
            actions.record_access(s, p.user_id, user, role, status)
        if body.credits_delta:
            applied = credits.adjust(s, user, body.credits_delta, grants=sv.settings.credit_grants)
            actions.record(s, p.user_id, "user.credits", user, asked=body.credits_delta, applied=applied)
        return user_json(user)


@router.get("/users/{user_id}/keys", summary="A user's API keys (never the keys themselves)")
def list_keys(request: Request, user_id: str, _: Principal = Depends(admin_only)) -> dict[str, Any]:
    with services(request).db.session() as s:
        _user(s, user_id)
        rows = s.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at))
        return {"object": "list", "data": [key_json(k) for k in rows]}


@router.post("/users/{user_id}/keys", status_code=201, summary="Create an API key (shown once)")
def new_key(
    request: Request, user_id: str, body: NewKey | None = None, p: Principal = Depends(admin_only)
) -> dict[str, Any]:
    with services(request).db.session() as s:
        user = _user(s, user_id)
        record, text = create_key(s, user, name=(body or NewKey()).name)
        actions.record(s, p.user_id, "key.create", user, key_id=record.id)
        return {**key_json(record), "key": text}


@router.delete("/keys/{key_id}", summary="Revoke an API key")
def revoke_key(request: Request, key_id: str, p: Principal = Depends(admin_only)) -> dict[str, Any]:
    with services(request).db.session() as s:
        record = s.get(ApiKey, key_id)
        if record is None:
            raise APIError(404, f"No key with id '{key_id}'.", param="key_id", code="key_not_found")
        if record.revoked_at is None:
            record.revoked_at = now()
            actions.record(s, p.user_id, "key.revoke", s.get(User, record.user_id), key_id=record.id)
        return key_json(record)


@router.get("/actions", summary="What admins changed (accounts, roles, suspensions, credits, keys), newest first")
def admin_actions(
    request: Request,
    user_id: str | None = Query(None, description="Only changes to this account"),
    actor_id: str | None = Query(None, description="Only changes made by this admin"),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(admin_only),
) -> dict[str, Any]:
    with services(request).db.session() as s:
        rows = actions.recent(s, user_id=user_id, actor_id=actor_id, limit=limit)
        return {"object": "list", "data": [actions.action_json(a) for a in rows]}


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "user_id": e.user_id,
        "created_at": int(e.created_at),
        "endpoint": e.endpoint,
        "category": e.category,
        "score": e.score,
        "prompt_hash": e.prompt_hash,
        "action": e.action,
    }


@router.get("/audit", summary="Content-policy refusals (prompt hashes only), newest first")
def audit(
    request: Request,
    user_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(admin_only),
) -> dict[str, Any]:
    with services(request).db.session() as s:
        q = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit)
        if user_id:
            q = q.where(AuditEvent.user_id == user_id)
        return {"object": "list", "data": [audit_json(e) for e in s.scalars(q)]}


class Decision(RequestBody):
    model_config = ConfigDict(extra="forbid")
    decision: str  # confirm | overturn


@router.get("/reviews", summary="The review queue: refused requests and reported images, newest first")
async def review_queue(
    request: Request,
    review: str | None = Query("pending", description="pending, confirmed or overturned; empty for all"),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(admin_only),
) -> dict[str, Any]:
    sv = services(request)

    def load() -> list[dict[str, Any]]:
        with sv.db.session() as s:  # the policy's reading of each reported image's prompt (the classifier)
            return reviews.queue(s, review or None, limit, sv.policy)

    return {"object": "list", "data": await run_in_threadpool(load)}


@router.post("/reviews/{kind}/{item_id}", summary="Confirm or overturn a refusal or a report")
def review_item(
    request: Request,
    kind: str,
    body: Decision,
    item_id: int = Path(ge=1, le=2**31 - 1),
    p: Principal = Depends(admin_only),
) -> dict[str, Any]:
    if kind not in ("refusal", "report"):
        raise invalid("The kind must be 'refusal' or 'report'.", "kind")
    with services(request).db.session() as s:
        return reviews.decide(s, p.user_id, kind, item_id, body.decision)  # type: ignore[arg-type]


@router.get("/images/{image_id}/content", summary="Any user's image, withheld or not (to review a report)",
            response_class=Response)  # fmt: skip
def any_image(request: Request, image_id: str, _: Principal = Depends(admin_only)) -> Response:
    sv = services(request)
    with sv.db.session() as s:
        rec = s.get(ImageRecord, image_id)
    if rec is None:
        raise APIError(404, f"No image with id '{image_id}'.", param="image_id", code="image_not_found")
    return Response(sv.store.get(rec.sha256), media_type="image/png", headers={"Cache-Control": "private"})
