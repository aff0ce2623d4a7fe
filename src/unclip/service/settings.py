"""Server settings, read from `UNCLIP_*` environment variables (CLI flags override them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROLES = ("admin", "trusted", "member", "waitlisted")
STATUSES = ("active", "suspended")


def _default_credit_grants() -> dict[str, int]:
    return {"admin": 100_000, "trusted": 2_000, "member": 200, "waitlisted": 0}


def _default_rate_limits() -> dict[str, int]:
    # requests per minute per API key
    return {"admin": 600, "trusted": 120, "member": 30, "waitlisted": 10}


def _default_features() -> dict[str, list[str]]:
    # which roles may use each feature; "edit_upload" is editing an image that is not one of your own results
    return {
        "generate": ["admin", "trusted", "member"],
        "edit": ["admin", "trusted", "member"],
        "edit_upload": ["admin", "trusted"],
        "variation": ["admin", "trusted", "member"],
        "outpaint": ["admin", "trusted"],
        "blend": ["admin", "trusted", "member"],
        "upscale": ["admin", "trusted", "member"],
        "real_face_upload": ["admin"],
    }


@dataclass
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = ""  # default model folder; empty: unclip.BUNDLED_MODEL_DIR
    models_dir: str = ""  # extra model folders; empty: data_dir/models
    device: str = "cpu"
    policy_file: str = ""  # content policy file; empty: the one shipped in unclip.safety (re-read on change)
    public_url: str = ""  # base of image URLs; empty: taken from each request
    secret_key: str = ""  # signs image URLs; empty: generated once into data_dir/secret.key
    url_ttl_s: int = 3600
    workers: int = 1
    # a broker (redis://…) makes the server enqueue jobs for `unclip worker` processes instead of running them
    broker_url: str = ""
    broker_heartbeat_s: float = 15.0  # a worker silent this long is dead: the broker hands its job on
    lease_s: float = 15.0  # a running job whose worker renewed nothing for this long may be taken over
    redispatch_s: float = 60.0  # a queued job not taken for this long has its message sent again
    batch_images: int = 8  # a worker runs queued compatible generations together, up to this many images (1: off)
    queue_size: int = 16
    request_timeout_s: float = 600.0
    shutdown_grace_s: float = 30.0
    max_request_bytes: int = 20 * 1024 * 1024
    signup_open: bool = True
    bootstrap_admin: bool = True  # first start with no users creates an admin and prints its key once
    admin_key: str = ""  # UNCLIP_ADMIN_KEY: use this key for the bootstrap admin instead of a random one
    credit_costs: dict[str, int] = field(default_factory=lambda: {"256x256": 1, "512x512": 2, "1024x1024": 4})
    upscale_cost: int = 4
    credit_grants: dict[str, int] = field(default_factory=_default_credit_grants)
    rate_limits: dict[str, int] = field(default_factory=_default_rate_limits)
    features: dict[str, list[str]] = field(default_factory=_default_features)
    serve_web: bool = True

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'unclip.db').resolve()}"

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else self.data_dir / "models"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `UNCLIP_<FIELD>` variables (dicts as JSON); non-None overrides win."""
        import json

        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"UNCLIP_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            elif isinstance(default, dict):
                values[f.name] = {**default, **json.loads(raw)}
            elif isinstance(default, Path):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        if "database_url" not in values and env.get("UNCLIP_DB"):
            values["database_url"] = env["UNCLIP_DB"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
