"""The Alembic migrations build the schema the models describe (a model changed without a migration, or a
migration that differs from its model, shows here), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from unclip.service.db import Base, Database

from .test_books import DATABASES, PG_URL, _clean_postgres


@pytest.mark.parametrize("database", DATABASES)
def test_the_migrations_build_the_models_schema(database: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    db = Database(_clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'schema.db'}")
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_an_upgrade_cut_off_part_way_leaves_a_sqlite_database_that_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pysqlite commits before each DDL statement: an upgrade interrupted after its first step kept that step
    without the new version, and every later start replayed it ('duplicate column name: review')."""
    import alembic.operations
    from alembic import command

    from unclip.service.db import alembic_config, make_engine

    url = f"sqlite:///{tmp_path / 'unclip.db'}"
    engine = make_engine(url)  # a database an older release made (revision 0003)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    engine.dispose()

    def cut_off(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # 0004 adds a column, then a table: cut off between the two
        m.setattr(alembic.operations.Operations, "create_table", cut_off)
        with pytest.raises(KeyboardInterrupt):
            Database(url)
    Database(url).dispose()


def _open(url: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        Database(url).dispose()
        results.put("ok")  # type: ignore[attr-defined]
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("database", DATABASES)
def test_two_processes_opening_a_new_database_at_once_both_start(database: str, tmp_path: Path) -> None:
    """Two servers (or a server and `unclip users add`) starting on a new database both created its tables: one
    stopped with 'table users already exists' (SQLite) or a unique violation on pg_type (PostgreSQL)."""
    import multiprocessing as mp

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    ctx = mp.get_context("spawn")
    for trial in range(2):  # each trial's two processes start within microseconds of each other
        url = _clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / f'unclip{trial}.db'}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [results.get(timeout=5) for _ in procs] == ["ok", "ok"]
