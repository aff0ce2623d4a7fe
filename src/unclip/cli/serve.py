"""`unclip serve`: the OpenAI-compatible API and the web app."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from unclip.cli import app


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1; env UNCLIP_HOST)."),
    port: int = typer.Option(None, help="Port (default 8000; env UNCLIP_PORT)."),
    model: Path = typer.Option(None, "--model", help="Default model folder (default: the bundled model)."),
    models_dir: Path = typer.Option(None, "--models-dir", help="Folder of more installed models."),
    db: str = typer.Option(
        None, "--db", help="Database URL: sqlite:///path or postgresql://… (default: SQLite in the data dir)."
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="Images, database and secret (default ./var)."),
    device: str = typer.Option(None, help="Torch device for the engine (cpu, cuda)."),
    workers: int = typer.Option(None, help="Engine worker threads (default 1; none with --broker)."),
    broker: str = typer.Option(
        None,
        "--broker",
        help="Broker URL (redis://host:6379/0; env UNCLIP_BROKER_URL): queue jobs for `unclip worker` "
        "processes instead of running them in this process.",
    ),
    policy: Path = typer.Option(
        None, "--policy", help="Content policy file (default: the bundled one; edits apply at once)."
    ),
) -> None:
    """Serve the Images API (OpenAI dall-e-2 contract) under /v1 and the web app at /."""
    from sqlalchemy.exc import SQLAlchemyError

    from unclip.service.app import bootstrap_admin, create_app, draining_server
    from unclip.service.db import hold_jobs_lock
    from unclip.service.settings import Settings

    try:
        settings = Settings.from_env(
            host=host,
            port=port,
            model=str(model) if model else None,
            models_dir=str(models_dir) if models_dir else None,
            database_url=db,
            data_dir=data_dir,
            device=device,
            workers=workers,
            broker_url=broker,
            policy_file=str(policy) if policy else None,
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        new_db = _new_sqlite_file(settings.db_url)
        application = create_app(settings)  # secrets, database, policy file: the model loads at the start
        # said here in one line; the server takes it for good as it starts
        hold_jobs_lock(application.state.services.db, shared=bool(settings.broker_url))()
    except (ValueError, OSError, RuntimeError) as exc:  # settings, folders and keys, the broker
        _fail(exc)
    except SQLAlchemyError as exc:
        _fail(RuntimeError(f"the database ({settings.db_url.split('@')[-1]}): {str(exc).splitlines()[0]}"))
    if settings.models_dir and not Path(settings.models_dir).is_dir():  # a mount not there yet: said, not fatal
        warning = f"warning: the models folder {settings.models_dir} does not exist"
        typer.secho(warning, fg=typer.colors.YELLOW, err=True)
    if new_db:  # a misspelt path would otherwise start an empty server that looks like lost accounts
        typer.secho(f"note: created a new database at {new_db}", fg=typer.colors.YELLOW, err=True)
    server = draining_server(application, host=settings.host, port=settings.port, log_level="info")
    sock = server.config.bind_socket()  # a port in use stops here, before the first-start key is shown
    try:
        key = bootstrap_admin(application.state.services.db, settings)
    except RuntimeError as exc:
        sock.close()
        _fail(exc)
    if key:
        typer.secho(
            "\nFirst start: created the admin user admin@localhost. Its API key, shown only this once:\n",
            fg=typer.colors.YELLOW,
        )
        typer.secho(f"    {key}\n", bold=True)
        typer.echo("Use it as OPENAI_API_KEY (base URL http://HOST:PORT/v1) or to sign in to the web app.\n")
    server.run(sockets=[sock])


def _new_sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names, when it does not exist yet (the server creates it)."""
    from unclip.service.db import sqlite_file

    path = sqlite_file(url)
    return None if path is None or path.exists() else path


def _fail(exc: Exception) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if isinstance(exc, ValueError) else 1)
