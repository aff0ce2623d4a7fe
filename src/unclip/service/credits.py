"""Credits: images cost credits; a monthly grant tops each user up to their role's allowance."""

from __future__ import annotations

import calendar
import time

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from unclip.service.db import CreditEntry, Job, User
from unclip.service.errors import APIError


def period(t: float | None = None) -> str:
    return time.strftime("%Y-%m", time.gmtime(time.time() if t is None else t))


def held(s: Session, user_id: str) -> int:
    """Credits charged for the user's jobs that have not ended yet (refunded if they fail or are cancelled)."""
    return int(
        s.scalar(
            select(func.coalesce(func.sum(Job.cost), 0)).where(
                Job.user_id == user_id, Job.status.in_(("queued", "running"))
            )
        )
    )


def ensure_grant(s: Session, user: User, grants: dict[str, int], t: float | None = None) -> None:
    """Once per calendar month (UTC), raise the balance to the role's grant (credits above it are kept); the
    first grant is added to the balance, so that credits given to a waitlisted user are not swallowed by it.

    Credits held by unfinished jobs count as part of the balance: the grant tops up to `grant - held`, so that
    a job charged last month and refunded after the grant gives back no more than the grant (a month's unused
    credits cannot be carried into the next by cancelling a queued job after midnight), and one that succeeds
    after the grant is paid out of the new month's.

    A compare-and-set on (period, balance): of two requests that both found the month not yet granted, one
    grants and the other sees its write miss and reads the row again. SQLite ignores FOR UPDATE, so the row
    lock alone let both grant, and the absolute balance overwrote a charge made in between."""
    current = period(t)
    s.flush()  # the caller's pending changes (an approval's role) before the row is read again
    while user.credits_period != current:
        if user.role == "waitlisted":
            return  # the month starts counting when they are approved
        old = user.credits
        grant = int(grants.get(user.role, 0)) - held(s, user.id)
        if not user.credits_period:  # the first grant (at approval or sign-up) comes on top of what an admin gave
            new = min(old + max(grant, 0), MAX_CREDITS)
        else:  # a top-up, under what an admin gave or took since (while the user was back on the waitlist)
            since = pending_adjustments(s, user)
            new = min(max(old - since, grant) + since, MAX_CREDITS)
        done = s.execute(
            update(User)
            .where(User.id == user.id, User.credits_period == user.credits_period, User.credits == old)
            .values(credits=new, credits_period=current)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1 and new > old:
            s.add(CreditEntry(user_id=user.id, delta=new - old, reason="grant"))
        s.refresh(user)


def pending_adjustments(s: Session, user: User) -> int:
    """What admins gave (or took) since the last month the user was granted ended: made while they were back
    on the waitlist, so before this month's grant, on top of which it comes."""
    year, month = (int(v) for v in str(user.credits_period).split("-"))
    ended = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    since = (CreditEntry.user_id == user.id, CreditEntry.reason == "admin", CreditEntry.created_at >= ended)
    return int(s.scalar(select(func.coalesce(func.sum(CreditEntry.delta), 0)).where(*since)))


def charge(s: Session, user_id: str, cost: int, grants: dict[str, int], job_id: str | None = None) -> int:
    """Take `cost` credits or raise 429 insufficient_quota. Returns the balance left."""
    user = s.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise APIError(401, "Unknown user.", code="invalid_api_key")
    ensure_grant(s, user, grants)
    s.flush()
    done = s.execute(
        update(User).where(User.id == user_id, User.credits >= cost).values(credits=User.credits - cost)
    )
    if done.rowcount != 1:
        s.refresh(user)
        raise APIError(
            429,
            f"You exceeded your current quota: this request needs {cost} credits and you have "
            f"{user.credits}. Credits are topped up monthly; ask the administrator of this server for more.",
            type="insufficient_quota",
            code="insufficient_quota",
            headers={"x-should-retry": "false"},
        )
    s.add(CreditEntry(user_id=user_id, delta=-cost, reason="charge", job_id=job_id))
    s.flush()
    s.refresh(user)
    return user.credits


def refund(s: Session, user_id: str, cost: int, job_id: str | None = None) -> None:
    if cost <= 0:
        return
    s.execute(update(User).where(User.id == user_id).values(credits=User.credits + cost))
    s.add(CreditEntry(user_id=user_id, delta=cost, reason="refund", job_id=job_id))


MAX_CREDITS = 10**9  # a balance stays within a 32-bit column


def adjust(
    s: Session, user: User, delta: int, reason: str = "admin", *, grants: dict[str, int] | None = None
) -> int:
    """Add `delta` credits (a negative delta takes at most what the user has; the balance goes no higher than
    MAX_CREDITS). The ledger records the change that was made, so that it always sums to the balance. Returns
    that change. With `grants`, this month's grant is made first (made after the change, its top-up would
    swallow a gift or undo a debit).

    A compare-and-set on the balance, as in `ensure_grant`: SQLite ignores FOR UPDATE, so a charge committed
    between the read and the write made a debit sized on the old balance take the user below zero."""
    if grants is not None:
        ensure_grant(s, user, grants)
    query = select(User).where(User.id == user.id).with_for_update()
    while True:
        locked = s.scalar(query.execution_options(populate_existing=True))
        if locked is None:
            raise APIError(404, "No such user.", code="user_not_found")
        current = locked.credits
        applied = max(-current, min(delta, MAX_CREDITS - current))
        done = s.execute(
            update(User)
            .where(User.id == user.id, User.credits == current)
            .values(credits=current + applied)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount == 1:
            break
    if applied:
        s.add(CreditEntry(user_id=user.id, delta=applied, reason=reason))
    s.flush()
    s.refresh(user)
    return applied
