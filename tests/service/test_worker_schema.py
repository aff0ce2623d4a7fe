"""What a broker worker says while it waits for the database the server migrates."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from unclip.service.db import Database
from unclip.service.worker import BrokerWorker


def _wait(url: str, timeout_s: float) -> str:
    db = Database(url, run_migrations=False)
    me = types.SimpleNamespace(settings=types.SimpleNamespace(db_url=url), db=db)
    try:
        with pytest.raises(RuntimeError) as info:
            BrokerWorker.wait_for_schema(me, timeout_s=timeout_s)  # type: ignore[arg-type]
    finally:
        db.dispose()
    return str(info.value)


def test_a_worker_says_why_it_cannot_start(tmp_path: Path) -> None:
    """Every error was swallowed for two minutes and then blamed on the schema (an unreachable server too)."""
    assert _wait(f"sqlite:///{tmp_path / 'empty.db'}", 0).startswith("the database has no schema yet: start")
    unreachable = _wait("postgresql://nobody@127.0.0.1:1/x", 0)
    assert unreachable.startswith("cannot reach the database (") and "refused" in unreachable
