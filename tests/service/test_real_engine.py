"""The real Engine on a tiny random-weight model, through the server (skipped until both exist)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from .conftest import make_settings


def test_real_engine_tiny_model(tmp_path: Path) -> None:
    tiny = pytest.importorskip("unclip.models.tiny")
    pytest.importorskip("unclip.engine")
    import threading
    import time

    import openai
    import uvicorn

    from unclip.service.app import create_app
    from unclip.service.auth import create_key, create_user

    from .conftest import free_port
    from .fakes import FakePolicy

    model_dir = Path(tiny.make_tiny_model(tmp_path / "tiny"))
    app = create_app(make_settings(tmp_path / "data", model=str(model_dir)), policy=FakePolicy())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with app.state.services.db.session() as s:
            _, key = create_key(s, create_user(s, "t@example.test", role="member"))
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600
        )
        assert [m.id for m in client.models.list()] == ["dall-e-2", model_dir.name]
        r = client.images.generate(
            prompt="a smiling face", size="256x256", response_format="b64_json", extra_body={"steps": 2}
        )
        assert Image.open(io.BytesIO(base64.b64decode(r.data[0].b64_json))).size == (256, 256)
    finally:
        server.should_exit = True
        thread.join(30)
