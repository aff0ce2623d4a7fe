"""Fixtures: an app with injected test doubles, a live uvicorn server on 127.0.0.1, users and keys."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from unclip.service.app import create_app, draining_server
from unclip.service.auth import approve, create_key, create_user
from unclip.service.settings import Settings

from .fakes import FakeEngine, FakePolicy


def png(size: int = 64, mode: str = "RGBA", transparent: bool = True, w: int | None = None) -> bytes:
    img = Image.new(mode, (w or size, size), (200, 10, 10, 255) if mode == "RGBA" else (200, 10, 10))
    if transparent and mode == "RGBA":
        img.paste((0, 0, 0, 0), (0, 0, size // 2, size // 2))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_settings(tmp: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp,
        "queue_size": 8,
        "request_timeout_s": 30.0,
        "shutdown_grace_s": 5.0,
        "bootstrap_admin": False,
        "serve_web": True,
    }
    db = os.environ.get("UNCLIP_TEST_DB_URL")
    if db:
        base["database_url"] = db
    base.update(kw)
    return Settings(**base)


@dataclass
class Server:
    app: Any
    url: str
    engine: Any  # the FakeEngine, or None on the real engine
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def sv(self) -> Any:
        return self.app.state.services

    def user(self, role: str = "member", email: str | None = None) -> tuple[str, str]:
        """Create a user with `role`; returns (user_id, api_key)."""
        with self.sv.db.session() as s:
            email = email or f"{role}-{time.monotonic_ns()}@example.test"
            user = create_user(s, email, role="waitlisted")
            if role != "waitlisted":
                approve(s, user, role, keep_admin=False)
            _, key = create_key(s, user)
            return user.id, key

    def client(self, key: str, **kw: Any) -> Any:
        import openai

        kw.setdefault("timeout", 30)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def sigterm(self) -> None:
        """What SIGTERM does to `unclip serve`: drain the job queue, then shut down."""
        import signal

        self.server.handle_exit(signal.SIGTERM, None)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    settings: Settings,
    engine: FakeEngine | None = None,
    policy: Any = None,
    engines: dict[str, Any] | None = None,
    *,
    real_engine: bool = False,
    engine_loader: Any = None,
) -> Server:
    """A live server on a free port. `real_engine`: the production loader (`Engine.load` on `settings.model`)
    instead of the fake engine."""
    engine = None if real_engine else engine or FakeEngine()
    if real_engine:
        app = create_app(settings, policy=policy or FakePolicy(), engine_loader=engine_loader)
    else:
        app = create_app(
            settings,
            engines=engines or {"unclip-test": engine},
            policy=policy or FakePolicy(),
            engine_loader=engine_loader,
        )
    port = free_port()
    server = draining_server(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # startup warms the policy and loads the default model
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return Server(app=app, url=f"http://127.0.0.1:{port}", engine=engine, server=server, thread=thread)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(make_settings(tmp_path))
    yield srv
    srv.stop()


@pytest.fixture
def member(live: Server) -> tuple[str, str]:
    return live.user("member")


@pytest.fixture
def trusted(live: Server) -> tuple[str, str]:
    return live.user("trusted")
