"""The same flows on a real PostgreSQL server (env UNCLIP_TEST_POSTGRES_URL; skipped when unset)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import make_settings, png, start_server

URL = os.environ.get("UNCLIP_TEST_POSTGRES_URL", "")
pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not URL, reason="UNCLIP_TEST_POSTGRES_URL is not set")]


@pytest.fixture
def pg_url() -> str:
    from sqlalchemy import text

    from unclip.service.db import make_engine

    engine = make_engine(URL)
    with engine.begin() as conn:  # a clean schema for each test
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return URL


def test_postgres_end_to_end(tmp_path: Path, pg_url: str) -> None:
    srv = start_server(
        make_settings(tmp_path, database_url=pg_url, rate_limits={"member": 2, "trusted": 100, "admin": 100})
    )
    try:
        r = httpx.post(srv.url + "/v1/signup", json={"email": "pg@example.test"})
        key, uid = r.json()["api_key"], r.json()["user"]["id"]
        with pytest.raises(openai.PermissionDeniedError):
            srv.client(key).images.generate(prompt="x", size="256x256")
        _, admin = srv.user("admin")
        httpx.post(f"{srv.url}/v1/admin/users/{uid}/approve", headers={"Authorization": f"Bearer {admin}"})
        client = srv.client(key)
        assert client.images.generate(prompt="x", n=2, size="256x256").data
        assert client.images.create_variation(image=("a.png", png(64), "image/png"), size="256x256").data
        assert next(m.id for m in client.models.list()) == "dall-e-2"
        with pytest.raises(openai.RateLimitError):
            client.images.generate(prompt="x", size="256x256")
        tc = srv.client(srv.user("trusted")[1])
        assert tc.images.edit(image=("a.png", png(64), "image/png"), prompt="hat", size="256x256").data
        with pytest.raises(openai.BadRequestError):
            tc.images.generate(prompt="forbidden", size="256x256")
        hist = httpx.get(srv.url + "/v1/images", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert len(hist) == 3
    finally:
        srv.stop()
