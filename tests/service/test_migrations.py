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
