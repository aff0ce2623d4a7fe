"""Database: SQLAlchemy models, engine setup (SQLite in WAL mode or PostgreSQL) and Alembic migrations."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def now() -> float:
    return time.time()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("user"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20), default="waitlisted")
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | suspended
    credits: Mapped[int] = mapped_column(Integer, default=0)
    credits_period: Mapped[str] = mapped_column(String(7), default="")  # YYYY-MM of the last monthly grant
    created_at: Mapped[float] = mapped_column(default=now)
    approved_at: Mapped[float | None] = mapped_column(default=None)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is never stored
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(default=now)
    last_used_at: Mapped[float | None] = mapped_column(default=None)
    revoked_at: Mapped[float | None] = mapped_column(default=None)


class WebSession(Base):
    """A browser sign-in: an HttpOnly cookie carries the token (stored as its SHA-256 digest), made from an API
    key that the browser then forgets; revoking the key ends its sessions."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("sess"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))  # sent back in X-CSRF-Token on every unsafe request
    created_at: Mapped[float] = mapped_column(default=now)
    expires_at: Mapped[float] = mapped_column()


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(
        String(20)
    )  # generation | edit | variation | outpaint | blend | upscale
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cost: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # {"images": [image ids]}
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # OpenAI error body
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # the worker running the job (one attempt's token) and, for a broker's workers, until when its lease
    # holds: a job whose lease ran out belongs to a worker that died, and another worker may take it over
    worker: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[float | None] = mapped_column(default=None)
    cancel_requested: Mapped[str | None] = mapped_column(String(20), default=None)  # user | shutdown
    dispatched_at: Mapped[float | None] = mapped_column(default=None)  # last message sent to the broker
    created_at: Mapped[float] = mapped_column(default=now)
    started_at: Mapped[float | None] = mapped_column(default=None)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status", "status"),
    )


class ImageRecord(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("img"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    model: Mapped[str] = mapped_column(String(200), default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(default=now)
    #: set when an admin confirmed a report of it: the image is no longer served
    withheld_at: Mapped[float | None] = mapped_column(default=None)
    __table_args__ = (Index("ix_images_user_created", "user_id", "created_at"),)


class CreditEntry(Base):
    __tablename__ = "credit_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(40))  # grant | charge | refund | admin
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[float] = mapped_column(default=now)


class AuditEvent(Base):
    """A content-policy refusal. Only a hash of the prompt is kept."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(default=now)
    endpoint: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(60), default="")
    score: Mapped[float] = mapped_column(default=0.0)
    prompt_hash: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(20), default="refused")  # refused | throttled | suspended
    # the review queue: an admin confirms the refusal or overturns it (an overturned one is no offence)
    review: Mapped[str] = mapped_column(String(20), default="pending")  # pending | confirmed | overturned
    reviewed_by: Mapped[str | None] = mapped_column(String(40), default=None)
    reviewed_at: Mapped[float | None] = mapped_column(default=None)
    __table_args__ = (Index("ix_audit_user_created", "user_id", "created_at"),)


class AdminAction(Base):
    """What an admin changed, by whom: accounts, roles, suspensions, credits, keys. `actor_id` is None for the
    command line (the server's operator); rows outlive the accounts they name."""

    __tablename__ = "admin_actions"
    __table_args__ = (Index("ix_admin_actions_target_created", "target_user_id", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(default=now)
    actor_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    action: Mapped[str] = mapped_column(String(40))
    target_user_id: Mapped[str | None] = mapped_column(String(40), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImageReport(Base):
    """A user's report of one of their images; an admin confirms it (the image is withheld) or overturns it."""

    __tablename__ = "image_reports"
    # one pending report per image and user, even when two arrive at once
    __table_args__ = (
        Index(
            "uq_image_reports_pending",
            "image_id",
            "user_id",
            unique=True,
            sqlite_where=text("review = 'pending'"),
            postgresql_where=text("review = 'pending'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    review: Mapped[str] = mapped_column(String(20), default="pending")  # pending | confirmed | overturned
    reviewed_by: Mapped[str | None] = mapped_column(String(40), default=None)
    reviewed_at: Mapped[float | None] = mapped_column(default=None)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for another database or one in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        if (path := sqlite_file(url)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # keys' hashes, ledgers and prompts: readable by the server's user only (SQLite gives its -wal and
            # -shm files the database file's mode). The file is opened here only when it is new: on Linux,
            # closing any descriptor of a file drops every SQLite lock the process holds on it, and another
            # process's SQLite then takes itself for the last one and deletes the write-ahead log in use.
            with suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            os.chmod(path, 0o600)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


MIGRATION_LOCK = 0x756E636C6970  # PostgreSQL advisory lock key: one schema upgrade at a time ("unclip")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision: all of an upgrade or none of it, one process at a time
    (two servers, or a server and `unclip users`, starting on one new database both created its tables)."""
    from alembic import command

    url = engine.url.render_as_string(hide_password=False)
    cfg = alembic_config(url)
    if engine.dialect.name != "sqlite" or sqlite_file(url) is None:
        with engine.begin() as conn:  # PostgreSQL's DDL is transactional (a database in memory is this one's)
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")  # until this commits
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return
    # pysqlite commits before each DDL statement: an upgrade cut off part-way kept its first steps without
    # its version, and every later start replayed them and failed. A connection of its own, in SQLite's own
    # transaction (IMMEDIATE: the write lock at once, so a second process waits, then finds the schema new).
    ddl = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None})
    event.listen(ddl, "connect", lambda dbapi_conn, _record: dbapi_conn.execute("PRAGMA busy_timeout=30000"))
    event.listen(ddl, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with ddl.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        ddl.dispose()


JOBS_LOCK = MIGRATION_LOCK + 1  # PostgreSQL advisory lock key: who runs this database's jobs


class JobsBusy(RuntimeError):
    pass


def hold_jobs_lock(db: Database, shared: bool) -> Callable[[], None]:
    """Take the right to run this database's jobs and return what gives it back. A server without a broker
    runs them alone (`shared` False): at its start it puts every running job back in the queue, so a second
    one beside it took the first's jobs over and both answered for them. Servers with a broker share it
    (their workers hold leases). Raises JobsBusy when the other kind, or another lone server, has it. A
    SQLite database in memory is this process's own: nothing to take."""
    where = db.url.split("@")[-1]
    busy = JobsBusy(
        f"another server runs the jobs of this database ({where}): stop it first, or serve from several "
        "processes with --broker and `unclip worker`"
        if not shared
        else f"a server without --broker runs the jobs of this database ({where}): stop it first"
    )
    if db.engine.dialect.name == "postgresql":
        conn = db.engine.connect()
        kind = "_shared" if shared else ""
        try:
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock{kind}({JOBS_LOCK})").scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise busy

        def release_pg() -> None:
            try:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock{kind}({JOBS_LOCK})")
                conn.commit()
            except Exception:  # the connection is gone, and the lock with it
                conn.invalidate()
            conn.close()

        return _once(release_pg)
    path = sqlite_file(db.url)
    if path is None:
        return lambda: None
    import fcntl

    fd = os.open(f"{path}.jobs-lock", os.O_CREAT | os.O_RDWR, 0o600)  # not the database file: see make_engine
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy from None
    return _once(lambda: os.close(fd))


def _once(release: Callable[[], None]) -> Callable[[], None]:
    """`release` the first time only (a descriptor closed twice may be another file's by then)."""
    done = []

    def once() -> None:
        if not done:
            done.append(True)
            release()

    return once


class Database:
    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if run_migrations:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
