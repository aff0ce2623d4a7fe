"""The SQLite database file shared by the server and the admin CLI (or a worker, or any SQLite client)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from unclip.service.db import Database, User


def _other_process(path: Path, code: str) -> str:
    run = subprocess.run([sys.executable, "-c", f"import sqlite3; c = sqlite3.connect({str(path)!r}); {code}"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return run.stdout.strip()


def test_another_process_closing_the_database_leaves_the_servers_writes_in_it(tmp_path: Path) -> None:
    """Opening a Database opened and closed the file outside SQLite, which on Linux drops every SQLite lock
    this process held on it: the next `unclip users …` to close its connection deleted the write-ahead log
    the server was still writing to, and the server's later writes reached no other process (and a crash
    lost them)."""
    path = tmp_path / "unclip.db"
    server = Database(f"sqlite:///{path}")
    with server.session() as s:  # the server's pool keeps its connection open
        s.add(User(email="first@example.test", role="admin"))
    Database(f"sqlite:///{path}").dispose()  # a second one in the process (serve's first-start admin)
    assert _other_process(path, "print(c.execute('SELECT count(*) FROM users').fetchone()[0]); c.close()") == "1"
    assert Path(f"{path}-wal").exists()  # the server still has it open
    _other_process(path, "c.execute(\"INSERT INTO users (id, email, name, role, status, credits, credits_period, "
                         "created_at) VALUES ('user_cli', 'cli@example.test', '', 'member', 'active', 0, '', 0)\"); "
                         "c.commit(); c.close()")  # fmt: skip
    with server.session() as s:
        s.add(User(email="late@example.test", role="member"))
    with server.session() as s:  # the CLI's write reached the server, and the server's reaches the CLI
        assert set(s.scalars(select(User.email))) == {f"{n}@example.test" for n in ("first", "cli", "late")}
    got = _other_process(path, "print(sorted(r[0] for r in c.execute('SELECT email FROM users')))")
    assert got == str(sorted(f"{n}@example.test" for n in ("cli", "first", "late")))
    server.dispose()
