"""The review queue: refused requests and reported images, each confirmed or overturned by an admin.

- A refused request (an `AuditEvent`) that is overturned no longer counts as an offence (throttling and
  suspension read only the others); confirming it keeps it on the record.
- A user reports one of their own images with a reason; confirming the report withholds the image (no longer
  served, listed or usable as an input); overturning it clears the report (the image is served again unless
  another report of it stands confirmed).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import String, cast, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from unclip.service import actions
from unclip.service.db import AuditEvent, ImageRecord, ImageReport, Job, User, now
from unclip.service.errors import APIError, invalid
from unclip.service.runner import input_shas

__all__ = ["DECISIONS", "decide", "queue", "report_image"]

DECISIONS = {"confirm": "confirmed", "overturn": "overturned"}
Kind = Literal["refusal", "report"]
MAX_REASON = 500


def report_image(s: Session, user_id: str, image_id: str, reason: str) -> tuple[ImageReport, bool]:
    """(the report, whether it is new): a second report of the same image by the same user while the first
    is pending returns the first, also when both arrive at once. Call it first in its session: a race rolls
    the session back."""
    rec = s.get(ImageRecord, image_id)
    if rec is None or rec.user_id != user_id:
        raise APIError(404, f"No image with id '{image_id}'.", param="image_id", code="image_not_found")
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise invalid(f"'reason' is too long: at most {MAX_REASON} characters.", "reason")
    pending = select(ImageReport).where(
        ImageReport.image_id == image_id, ImageReport.user_id == user_id, ImageReport.review == "pending"
    )
    first = s.scalar(pending)
    if first is not None:
        return first, False
    report = ImageReport(image_id=image_id, user_id=user_id, reason=reason)
    s.add(report)
    try:
        s.flush()
    except IntegrityError:  # the same report sent at the same moment got in first (a unique index)
        s.rollback()  # nothing else was written in this session
        first = s.scalar(pending)
        if first is None:
            raise
        return first, False
    return report, True


def report_json(r: ImageReport, image: ImageRecord | None, policy: Any = None) -> dict[str, Any]:
    """A report as the queue lists it; with the policy's reading of the image's prompt when one is given."""
    category, score = "", 0.0
    if policy is not None and image is not None and image.prompt:
        d = policy.check(image.prompt)
        scores = getattr(d, "category_scores", {}) or {}
        if scores:
            category = getattr(d, "category", None) or max(scores, key=lambda k: scores[k])
            score = float(scores.get(category, 0.0))
    return {
        "type": "report",
        "id": r.id,
        "created_at": int(r.created_at),
        "user_id": r.user_id,
        "image_id": r.image_id,
        "prompt": image.prompt if image is not None else "",
        "reason": r.reason,
        "category": category,
        "score": round(score, 4),
        "review": r.review,
        "reviewed_by": r.reviewed_by,
        "reviewed_at": int(r.reviewed_at) if r.reviewed_at else None,
    }


def refusal_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "type": "refusal",
        "id": e.id,
        "created_at": int(e.created_at),
        "user_id": e.user_id,
        "endpoint": e.endpoint,
        "category": e.category,
        "score": e.score,
        "action": e.action,
        "prompt_hash": e.prompt_hash,
        "review": e.review,
        "reviewed_by": e.reviewed_by,
        "reviewed_at": int(e.reviewed_at) if e.reviewed_at else None,
    }


def queue(s: Session, review: str | None, limit: int, policy: Any = None) -> list[dict[str, Any]]:
    """Refusals and reports, newest first; `review` filters by state (pending, confirmed, overturned)."""
    if review is not None and review not in ("pending", *DECISIONS.values()):
        raise invalid("'review' must be pending, confirmed or overturned.", "review")
    q_refusals = select(AuditEvent).order_by(AuditEvent.created_at.desc()).limit(limit)
    q_reports = select(ImageReport).order_by(ImageReport.created_at.desc()).limit(limit)
    if review:
        q_refusals = q_refusals.where(AuditEvent.review == review)
        q_reports = q_reports.where(ImageReport.review == review)
    items = [refusal_json(e) for e in s.scalars(q_refusals)]
    items += [report_json(r, s.get(ImageRecord, r.image_id), policy) for r in s.scalars(q_reports)]
    items.sort(key=lambda it: (it["created_at"], it["type"], it["id"]), reverse=True)
    return items[:limit]


def decide(s: Session, admin_id: str, kind: Kind, item_id: int, decision: str) -> dict[str, Any]:
    """Confirm or overturn one item of the queue (a later decision replaces an earlier one)."""
    if decision not in DECISIONS:
        raise invalid("'decision' must be 'confirm' or 'overturn'.", "decision")
    row: AuditEvent | ImageReport | None = s.get(AuditEvent if kind == "refusal" else ImageReport, item_id)
    if row is None:
        raise APIError(404, f"No {kind} with id {item_id}.", param="id", code="review_item_not_found")
    image = None
    if isinstance(row, ImageReport):
        # the image's row first, locked: two decisions about one image's reports (PostgreSQL runs them side by
        # side) each read the other's report; without the lock, each read the other's before it committed
        image = s.scalar(
            select(ImageRecord)
            .where(ImageRecord.id == row.image_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    row.review, row.reviewed_by, row.reviewed_at = DECISIONS[decision], admin_id, now()
    # in the admin log too: a later decision replaces this one on the row
    detail = {"kind": kind, "item": item_id, **({"image_id": row.image_id} if isinstance(row, ImageReport) else {})}
    actions.record(s, admin_id, f"review.{decision}", s.get(User, row.user_id), **detail)
    if isinstance(row, ImageReport):
        s.flush()  # SQLite ignores FOR UPDATE: this write is what waits for the other decision to commit
        if image is not None:  # withheld while any report of it stands confirmed
            s.refresh(image)
            confirmed = s.scalar(
                select(ImageReport.id).where(
                    ImageReport.image_id == image.id, ImageReport.review == "confirmed"
                )
            )
            image.withheld_at = (image.withheld_at or now()) if confirmed is not None else None
            spread_withholding(s, image)
        return report_json(row, image)
    return refusal_json(row)


def _made_from(s: Session, sha: str) -> list[ImageRecord]:
    """The images of jobs that read the stored image `sha` (an upscale, a variation, an edit, an outpaint, a
    blend of it)."""
    jobs = s.scalars(select(Job).where(cast(Job.params, String).like(f"%{sha}%"))).all()
    ids = [j.id for j in jobs if sha in input_shas(j.params or {})]
    return list(s.scalars(select(ImageRecord).where(ImageRecord.job_id.in_(ids)))) if ids else []


def spread_withholding(s: Session, image: ImageRecord) -> None:
    """Withhold (or restore) what was made from `image`, and what was made from that: an upscale is the same
    picture larger, an edit or outpaint keeps most of it. Such an image stays withheld while an image it read
    is withheld or a report of its own stands confirmed."""
    s.flush()
    queue, seen = [image], {image.id}
    while queue:
        for made in _made_from(s, queue.pop(0).sha256):
            if made.id in seen:
                continue
            seen.add(made.id)
            job = s.get(Job, made.job_id)
            read = input_shas(job.params or {}) if job is not None else set()
            source_withheld = select(ImageRecord.id).where(
                ImageRecord.sha256.in_(read), ImageRecord.withheld_at.is_not(None)
            )
            own = select(ImageReport.id).where(ImageReport.image_id == made.id, ImageReport.review == "confirmed")
            keep = s.scalar(source_withheld.limit(1)) is not None or s.scalar(own.limit(1)) is not None
            made.withheld_at = (made.withheld_at or now()) if keep else None
            s.flush()
            queue.append(made)
