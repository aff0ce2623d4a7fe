"""`unclip worker`: run the jobs of a server started with `--broker`."""

from __future__ import annotations

from pathlib import Path

import typer

from unclip.cli import app


@app.command()
def worker(
    broker: str = typer.Option(
        None, "--broker", help="Broker URL, the server's (redis://host:6379/0; env UNCLIP_BROKER_URL)."
    ),
    db: str = typer.Option(
        None, "--db", help="Database URL, the server's (default: SQLite in the data dir)."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="The server's data folder (images and keys; shared between hosts)."
    ),
    model: Path = typer.Option(None, "--model", help="Default model folder (default: the bundled model)."),
    models_dir: Path = typer.Option(None, "--models-dir", help="Folder of more installed models."),
    device: str = typer.Option(None, help="Torch device for the engine (cpu, cuda)."),
    threads: int = typer.Option(1, min=1, help="Jobs run at once by this process."),
) -> None:
    """Run jobs from the broker until stopped (SIGTERM or Ctrl-C: running jobs get the shutdown grace, then
    go back to the queue for another worker). Start as many as you like, on any host that reaches the database,
    the broker and the data folder."""
    import faulthandler
    import logging
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack: where a job is stuck
    from unclip.service.settings import Settings
    from unclip.service.worker import BrokerWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(
            broker_url=broker,
            database_url=db,
            data_dir=data_dir,
            model=str(model) if model else None,
            models_dir=str(models_dir) if models_dir else None,
            device=device,
        )
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if not settings.broker_url:
        typer.secho(
            "unclip worker needs the broker: --broker redis://HOST:6379/0", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(2)
    try:
        worker = BrokerWorker(settings, threads=threads)
    except (ValueError, OSError) as exc:  # a short provenance key, an images folder it cannot write
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        typer.secho(f"unclip worker: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    try:
        worker.run()
    except RuntimeError as exc:
        typer.secho(f"unclip worker: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
