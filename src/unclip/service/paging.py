"""Keyset pages of a user's rows, newest first: `after` is the last id of the page before."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from unclip.service.db import ImageRecord, Job
from unclip.service.errors import invalid

Row = TypeVar("Row", ImageRecord, Job)


def newest_first(
    s: Session, query: Select[tuple[Row]], model: type[Row], user_id: str, after: str | None, limit: int
) -> tuple[list[Row], bool]:
    """The page of `query`'s rows (of `model`, with `id`, `user_id`, `created_at`) that follows the row `after`,
    and whether more follow. An `after` that is not one of the user's rows is a 400: answering the first page
    again would send a client that walks the pages round in circles."""
    if after:
        ref = s.get(model, after)
        if ref is None or ref.user_id != user_id:
            raise invalid(f"Invalid 'after': no item with id '{after}' to continue from.", "after")
        query = query.where(
            (model.created_at < ref.created_at) | ((model.created_at == ref.created_at) & (model.id < ref.id))
        )
    rows = list(s.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
