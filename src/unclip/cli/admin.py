"""`unclip users …`, `unclip keys …` and `unclip admin …`: accounts and audit, straight on the database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from unclip.cli import app

users_app = typer.Typer(
    help="Manage users: list, add, approve the waitlist, roles, suspension, credits.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys: list, create (shown once), revoke.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Server administration: content-policy audit log, database migrations.", no_args_is_help=True
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
    from unclip.service.db import Database
    from unclip.service.settings import Settings

    settings = Settings.from_env(database_url=db, data_dir=data_dir)
    sqlite = settings.data_dir / "unclip.db"
    if not settings.database_url and not create and not sqlite.is_file():
        typer.secho(
            f"no database in {settings.data_dir.resolve()} (no unclip.db there): point --data-dir (or "
            "UNCLIP_DATA_DIR) at the server's data folder, or --db at its database (`unclip serve` or "
            "`unclip admin migrate --data-dir DIR` creates one)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    return Database(settings.db_url), settings


def _user(s: Any, ref: str) -> Any:
    from unclip.service.auth import find_user

    user = find_user(s, ref)
    if user is None:
        typer.secho(f"no user {ref!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    return user


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

    from unclip.service.db import User

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
    from unclip.service.auth import create_key, create_user

    database, _ = _db(db, data_dir)
    with database.session() as s:
        try:
            user = create_user(s, email, name=name, role=role)
        except ValueError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        _, key = create_key(s, user, name="cli")
    typer.echo(f"user {user.id} ({user.email}, {user.role})\napi key (shown once): {key}")


@users_app.command("approve")
def users_approve(
    user: str,
    role: str = typer.Option("member", help="Role to grant."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Approve a waitlisted user (by id or email)."""
    from unclip.service import credits
    from unclip.service.auth import approve

    database, settings = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        approve(s, u, role)
        credits.ensure_grant(s, u, settings.credit_grants)
        typer.echo(f"{u.email}: {u.role}, {u.credits} credits")


@users_app.command("role")
def users_role(user: str, role: str, db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Set a user's role."""
    from unclip.service.auth import check_role
    from unclip.service.db import now

    database, _ = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        u.role = check_role(role)
        if u.role != "waitlisted" and u.approved_at is None:  # as the API's role change
            u.approved_at = now()
        typer.echo(f"{u.email}: {u.role}")


@users_app.command("suspend")
def users_suspend(
    user: str,
    lift: bool = typer.Option(False, "--lift", help="Lift the suspension."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Suspend a user (or lift it with --lift)."""
    database, _ = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        u.status = "active" if lift else "suspended"
        typer.echo(f"{u.email}: {u.status}")


@users_app.command("credits")
def users_credits(
    user: str,
    delta: int = typer.Argument(..., help="Credits to add (negative to remove)."),
    db: str = DB_OPT,
    data_dir: Path = DATA_OPT,
) -> None:
    """Add or remove credits."""
    from unclip.service import credits

    database, settings = _db(db, data_dir)
    with database.session() as s:
        u = _user(s, user)
        credits.ensure_grant(s, u, settings.credit_grants)  # first: the month's top-up would swallow the change
        credits.adjust(s, u, delta)
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
    from unclip.service.auth import create_key

    database, _ = _db(db, data_dir)
    with database.session() as s:
        _, key = create_key(s, _user(s, user), name=name)
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(key_id: str, db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Revoke a key by id."""
    from unclip.service.db import ApiKey

    database, _ = _db(db, data_dir)
    with database.session() as s:
        k = s.get(ApiKey, key_id)
        if k is None:
            typer.secho(f"no key {key_id!r}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        k.revoked_at = k.revoked_at or time.time()
    typer.echo(f"revoked {key_id}")


@admin_app.command("audit")
def admin_audit(
    user: str = typer.Option(None, help="Only this user (id or email)."),
    limit: int = 50,
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


@admin_app.command("migrate")
def admin_migrate(db: str = DB_OPT, data_dir: Path = DATA_OPT) -> None:
    """Apply database migrations (the server also does this when it starts); creates a new SQLite file."""
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    _db(db, data_dir, create=True)
    typer.echo("database is at the newest revision")
