"""The SQLite database file shared by the server and the admin CLI (or a worker, or any SQLite client)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from unclip.service.db import Database, User

from .test_books import PG_URL, _clean_postgres


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


def _lone_and_shared(db: Database, tmp_path: Path) -> None:
    from unclip.service.db import JobsBusy
    from unclip.service.engines import ModelRegistry
    from unclip.service.jobs import JobManager
    from unclip.service.remote import RemoteJobs
    from unclip.service.storage import BlobStore

    from .fakes import FakeEngine

    class Dispatcher:
        def send(self, job_id: str) -> None: ...

        def close(self) -> None: ...

    def lone() -> JobManager:
        registry = ModelRegistry(None, None, lambda p: None, {"m": FakeEngine()})
        return JobManager(db, BlobStore(tmp_path / "images"), registry)

    def shared() -> RemoteJobs:
        return RemoteJobs(db, Dispatcher())  # type: ignore[arg-type]

    first = lone()
    first.start()
    with pytest.raises(JobsBusy, match="another server runs the jobs"):
        lone().start()
    with pytest.raises(JobsBusy, match="a server without --broker runs the jobs"):
        shared().start()
    first.stop(0)
    first.stop(0)  # twice: gives back once
    a, b = shared(), shared()
    a.start()
    b.start()  # servers with a broker share the database's jobs
    with pytest.raises(JobsBusy):
        lone().start()
    a.stop(0)
    b.stop(0)
    again = lone()
    again.start()  # free again once they stopped
    again.stop(0)


def test_one_server_without_a_broker_runs_a_databases_jobs(tmp_path: Path) -> None:
    """A second `unclip serve` on the database of a running one put the first's running jobs back in the
    queue at its start and ran them too: the first answered its waiting requests 500 while they were charged."""
    _lone_and_shared(Database(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="UNCLIP_TEST_POSTGRES_URL is not set")
def test_one_server_without_a_broker_runs_a_postgres_databases_jobs(tmp_path: Path) -> None:
    _clean_postgres()
    _lone_and_shared(Database(PG_URL), tmp_path)


def test_a_second_server_on_a_database_says_so_in_one_line(tmp_path: Path) -> None:
    from unclip.service.db import hold_jobs_lock

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    release = hold_jobs_lock(db, shared=False)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "unclip.cli", "serve", "--db", db.url, "--data-dir", str(tmp_path / "var"),
             "--port", "1"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        release()
    assert run.returncode == 1 and "another server runs the jobs of this database" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
