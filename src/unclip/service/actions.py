"""The admin action log: each change an admin makes to an account (created, approved, role, suspension,
credits) or a key (created, revoked) is recorded with who made it, in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from unclip.service.db import AdminAction, User

ACTIONS = (
    "user.create",
    "user.approve",
    "user.role",
    "user.status",
    "user.credits",
    "key.create",
    "key.revoke",
    "review.confirm",
    "review.overturn",
)


def record(s: Session, actor_id: str | None, action: str, target: User | None = None, **detail: Any) -> None:
    """Log `action` (one of ACTIONS) by `actor_id` (None: the command line) on `target`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown admin action {action!r}")
    s.add(
        AdminAction(
            actor_id=actor_id, action=action, target_user_id=target.id if target else None, detail=detail
        )
    )


def record_access(s: Session, actor_id: str | None, user: User, role: str, status: str) -> None:
    """Log the role and status changes between (`role`, `status`), read before a change, and `user` now."""
    if user.role != role:
        record(s, actor_id, "user.role", user, before=role, after=user.role)
    if user.status != status:
        record(s, actor_id, "user.status", user, before=status, after=user.status)


def recent(
    s: Session, *, user_id: str | None = None, actor_id: str | None = None, limit: int = 100
) -> list[AdminAction]:
    """Newest first; `user_id` the account acted on, `actor_id` the admin who acted."""
    q = select(AdminAction).order_by(AdminAction.created_at.desc(), AdminAction.id.desc()).limit(limit)
    if user_id:
        q = q.where(AdminAction.target_user_id == user_id)
    if actor_id:
        q = q.where(AdminAction.actor_id == actor_id)
    return list(s.scalars(q))


def action_json(a: AdminAction) -> dict[str, Any]:
    return {
        "id": a.id,
        "created_at": int(a.created_at),
        "actor_id": a.actor_id,
        "via": "api" if a.actor_id else "cli",
        "action": a.action,
        "user_id": a.target_user_id,
        "detail": a.detail,
    }
