"""`unclip users …`, `unclip keys …` and `unclip admin …`: accounts and audit, straight on the database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NoReturn

import typer

from unclip.cli import app

users_app = typer.Typer(
    help="Manage users: list, add, approve the waitlist, roles, suspension, credits.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys: list, create (shown once), revoke.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Server administration: content-policy audit log, admin actions, database migrations.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_app, name="admin")

DB_OPT = typer.Option(
    None, "--db", help="Database URL (default: env UNCLIP_DATABASE_URL or the data dir's SQLite)."
)
DATA_OPT = typer.Option(None, "--data-dir", help="Data dir (default ./var; env UNCLIP_DATA_DIR).")


def _db(db: str | None, data_dir: Path | None, create: bool = False) -> Any:
    """The server's database. A SQLite file that does not exist yet is not created (a mistyped --data-dir
    would otherwise hand back an empty database), except by `admin migrate` (create=True)."""
    from unclip.service.db import Database, sqlite_file
    from unclip.service.settings import Settings

    settings = Settings.from_env(database_url=db, data_dir=data_dir)
    if data_dir is not None and db is None and settings.database_url:
        _fail(
            f"--data-dir {data_dir} names a SQLite database, and the environment another "
            f"({settings.database_url.split('@')[-1]}): unset UNCLIP_DATABASE_URL or pass --db"
        )
    if create:
        return Database(settings.db_url), settings
    if not settings.database_url:
        if not (settings.data_dir / "unclip.db").is_file():
            _fail(
                f"no database in {settings.data_dir.resolve()} (no unclip.db there): point --data-dir (or "
                "UNCLIP_DATA_DIR) at the server's data folder, or --db at its database (`unclip serve` or "
                "`unclip admin migrate --data-dir DIR` creates one)"
            )
    elif (path := sqlite_file(settings.database_url)) is not None and not path.is_file():
        where = "--db" if db else "UNCLIP_DATABASE_URL"
        _fail(
            f"no database at {path} ({where} {settings.database_url}): point it at the server's database "
            "(`unclip admin migrate --db URL` creates one)"
        )
    return Database(settings.db_url), settings


def _user(s: Any, ref: str) -> Any:
    from unclip.service.auth import find_user

    user = find_user(s, ref)
    if user is None:
        _fail(f"no user {ref!r}")
    return user


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t else "-"


@users_app.command("list")
def users_list(
    role: str = typer.Option(None, help="Only this role (e.g. waitlisted)."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """List users."""
    from sqlalchemy import select

    from unclip.service.auth import check_role
    from unclip.service.db import User

    if role:
        try:
            check_role(role)
        except ValueError as exc:
            _fail(str(exc))
    database, _ = _db(db, data_dir)
    with database.session() as s:
        q = select(User).order_by(User.created_at)
        if role:
            q = q.where(User.role == role)
        for u in s.scalars(q):
            typer.echo(
                f"{u.id}  {u.email:<32} {u.role:<10} {u.status:<9} credits={u.credits:<6} "
                f"joined={_when(u.created_at)}"
            )


@users_app.command("add")
def users_add(
    email: str,
    role: str = typer.Option("member", help="admin, trusted, member or waitlisted."),
    name: str = "",
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Add a user and print a first API key (shown once)."""
    from unclip.service import actions
    from unclip.service.auth import create_key, create_user

    database, _ = _db(db, data_dir)
    with database.session() as s:
        try:
            user = create_user(s, email, name=name, role=role)
        except ValueError as exc:
            _fail(str(exc))
        record, key = create_key(s, user, name="cli")
        actions.record(s, None, "user.create", user, role=user.role)
        actions.record(s, None, "key.create", user, key_id=record.id)
    typer.echo(f"user {user.id} ({user.email}, {user.role})\napi key (shown once): {key}")


@users_app.command("approve")
def users_approve(
    user: str,
    role: str = typer.Option("member", help="Role to grant."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Approve a waitlisted user (by id or email)."""
    from unclip.service import actions, credits
    from unclip.service.auth import approve

    database, settings = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        before = u.role
        try:
            approve(s, u, role, keep_admin=False)
        except ValueError as exc:
            _fail(str(exc))
        actions.record(s, None, "user.approve", u, before=before, after=u.role)
        credits.ensure_grant(s, u, settings.credit_grants)
        typer.echo(f"{u.email}: {u.role}, {u.credits} credits")


@users_app.command("role")
def users_role(user: str, role: str, db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Set a user's role (the command line may also demote the last admin: it is how an operator recovers)."""
    _set_access(user, db, data_dir, role=role)


@users_app.command("suspend")
def users_suspend(
    user: str,
    lift: bool = typer.Option(False, "--lift", help="Lift the suspension."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Suspend a user (or lift it with --lift)."""
    _set_access(user, db, data_dir, status="active" if lift else "suspended")


def _set_access(ref: str, db: str | None, data_dir: Path | None, **change: str) -> None:
    from unclip.service import actions
    from unclip.service.auth import set_access

    database, _ = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, ref)
        role, status = u.role, u.status
        try:
            set_access(s, u, keep_admin=False, **change)
        except ValueError as exc:
            _fail(str(exc))
        actions.record_access(s, None, u, role, status)
        typer.echo(f"{u.email}: {u.role}, {u.status}")


@users_app.command("credits", context_settings={"ignore_unknown_options": True})
def users_credits(
    user: str,
    delta: int = typer.Argument(..., help="Credits to add (negative to remove)."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Add or remove credits."""
    from unclip.service import actions, credits

    database, settings = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        applied = credits.adjust(s, u, delta, grants=settings.credit_grants)
        actions.record(s, None, "user.credits", u, asked=delta, applied=applied)
        typer.echo(f"{u.email}: {u.credits} credits")


@keys_app.command("list")
def keys_list(user: str, db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """List a user's keys (prefixes only)."""
    from sqlalchemy import select

    from unclip.service.db import ApiKey

    database, _ = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        for k in s.scalars(select(ApiKey).where(ApiKey.user_id == u.id).order_by(ApiKey.created_at)):
            state = "revoked" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.prefix}…  {k.name:<16} {state:<8} last used {_when(k.last_used_at)}")


@keys_app.command("create")
def keys_create(user: str, name: str = "", db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Create a key for a user; it is printed once and stored hashed."""
    from unclip.service import actions
    from unclip.service.auth import create_key

    database, _ = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        record, key = create_key(s, u, name=name)
        actions.record(s, None, "key.create", u, key_id=record.id)
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(key_id: str, db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Revoke a key by id."""
    from unclip.service import actions
    from unclip.service.db import ApiKey, User

    database, _ = _db(db, data_dir)
    with database.session() as s:
        k = s.get(ApiKey, key_id)
        if k is None:
            _fail(f"no key {key_id!r}")
        if k.revoked_at is None:
            k.revoked_at = time.time()
            actions.record(s, None, "key.revoke", s.get(User, k.user_id), key_id=k.id)
    typer.echo(f"revoked {key_id}")


@admin_app.command("audit")
def admin_audit(
    user: str | None = typer.Option(None, help="Only this user (id or email)."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many rows."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Show content-policy refusals, newest first (time, user, endpoint, category, score, action, hash)."""
    from sqlalchemy import select

    from unclip.service.db import AuditEvent, User

    database, _ = _db(db, data_dir)
    with database.session() as s:
        q = select(AuditEvent, User.email).join(User, User.id == AuditEvent.user_id)
        if user:
            q = q.where(AuditEvent.user_id == _user(s, user).id)
        q = q.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(limit)
        for e, email in s.execute(q):
            typer.echo(
                f"{_when(e.created_at)}  {email:<28} {e.endpoint:<20} {e.category:<16} {e.score:5.2f} "
                f"{e.action:<9} {e.prompt_hash[:16]}"
            )


@admin_app.command("actions")
def admin_actions(
    user: str | None = typer.Option(None, help="Only changes to this user (id or email)."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many rows."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Show what admins changed, newest first (time, who, action, account, detail; `cli`: this command line)."""
    import json

    from sqlalchemy import select

    from unclip.service import actions
    from unclip.service.db import User

    database, _ = _db(db, data_dir)
    with database.session() as s:
        target = _user(s, user).id if user else None
        rows = actions.recent(s, user_id=target, limit=limit)
        ids = {r.actor_id for r in rows} | {r.target_user_id for r in rows}
        emails = dict(s.execute(select(User.id, User.email).where(User.id.in_(ids - {None}))).all())
        for r in rows:
            actor = emails.get(r.actor_id, r.actor_id) if r.actor_id else "cli"
            who = emails.get(r.target_user_id, r.target_user_id or "-")
            typer.echo(f"{_when(r.created_at)}  {actor:<28} {r.action:<13} {who:<28} {json.dumps(r.detail)}")


@admin_app.command("migrate")
def admin_migrate(db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Apply database migrations (the server also does this when it starts); creates a new SQLite file."""
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    _db(db, data_dir, create=True)
    typer.echo("database is at the newest revision")
