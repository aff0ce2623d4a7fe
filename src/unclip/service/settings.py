"""Server settings, read from `UNCLIP_*` environment variables (CLI flags override them)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROLES = ("admin", "trusted", "member", "waitlisted")
STATUSES = ("active", "suspended")
MIN_KEY_CHARS = 16
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _bad(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"UNCLIP_{name.upper()}={value!r}: expected {expected}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_map(name: str, values: dict[str, Any], keys: tuple[str, ...], expected: str) -> None:
    for key, value in values.items():
        if key not in keys:
            raise _bad(name, key, f"keys among {', '.join(keys)}")
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise _bad(name, {key: value}, expected)


def _parse(raw: str, default: Any) -> Any:
    """An environment variable's text as the type of the field's default."""
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in TRUE + FALSE:
            raise ValueError(f"one of {', '.join(TRUE)} or {', '.join(f for f in FALSE if f)}")
        return word in TRUE
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError("a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError("a number") from None
    if isinstance(default, dict):
        try:
            given = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("a JSON object") from None
        if not isinstance(given, dict):
            raise ValueError("a JSON object")
        return {**default, **given}
    if isinstance(default, Path):
        return Path(raw)
    return raw


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
    batch_images: int = 8  # a worker runs queued compatible generations together, up to this many images (0, 1: off)
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
        self.admin_key = self.admin_key.strip()
        self.validate()

    def validate(self) -> None:
        """Refuse values the server cannot run with (a ValueError naming the UNCLIP_ variable): at start, not
        as a 500 on every request, a price that pays the user, or a key anyone can guess."""
        positive = ("url_ttl_s", "workers", "queue_size", "request_timeout_s", "max_request_bytes",
                    "broker_heartbeat_s", "lease_s", "redispatch_s")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not (_number(value) and 0 < value < math.inf):
                raise _bad(name, value, "a number above 0")
        if not (isinstance(self.batch_images, int) and self.batch_images >= 0):
            raise _bad("batch_images", self.batch_images, "a whole number of images, 0 or more (0 and 1: off)")
        if not (_number(self.shutdown_grace_s) and 0 <= self.shutdown_grace_s < math.inf):
            raise _bad("shutdown_grace_s", self.shutdown_grace_s, "a number of seconds, 0 or more")
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise _bad("port", self.port, "a port number, 0 to 65535")
        credits = "a whole number of credits, 0 or more"
        if not (isinstance(self.upscale_cost, int) and self.upscale_cost >= 0):
            raise _bad("upscale_cost", self.upscale_cost, credits)
        _check_map("credit_costs", self.credit_costs, ("256x256", "512x512", "1024x1024"), credits)
        _check_map("credit_grants", self.credit_grants, ROLES, credits)
        _check_map("rate_limits", self.rate_limits, ROLES, "requests per minute (0: no limit)")
        known = _default_features()
        for feature, roles in self.features.items():
            if feature not in known:
                raise _bad("features", feature, f"one of {', '.join(known)}")
            if not (isinstance(roles, list) and all(r in ROLES for r in roles)):
                raise _bad("features", {feature: roles}, f"a list of roles ({', '.join(ROLES)})")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _bad("public_url", self.public_url, "an http:// or https:// URL with a host")
        if self.admin_key and len(self.admin_key) < MIN_KEY_CHARS:
            raise _bad("admin_key", "…", f"at least {MIN_KEY_CHARS} characters (a key anyone can guess is admin)")
        if self.secret_key and len(self.secret_key) < MIN_KEY_CHARS:
            raise _bad("secret_key", "…", f"at least {MIN_KEY_CHARS} characters (it signs image URLs)")
        if not re.fullmatch(r"cpu|mps|(cuda|xpu)(:[0-9]+)?", self.device):
            raise _bad("device", self.device, "cpu, cuda, cuda:N, mps or xpu")
        if self.device.startswith("cuda"):
            import torch

            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(self.device.partition(":")[2] or 0)
            if index >= count:
                raise _bad("device", self.device, f"a GPU this machine has ({count} found)")
        if self.model and not Path(self.model).is_dir():
            raise _bad("model", self.model, "a folder that exists")
        if self.model:
            from unclip.engine.components import is_model_folder

            if not is_model_folder(Path(self.model)):  # said now, not as a traceback once the server starts
                raise _bad("model", self.model, "a model folder (with prior/ and decoder/ in it)")
        in_memory = self.database_url.split("///", 1)[-1] in ("", ":memory:", "sqlite://")
        if self.database_url.startswith("sqlite") and in_memory:
            raise _bad("database_url", self.database_url, "a database file or server (not one in memory: each "
                       "connection would get an empty one)")  # fmt: skip

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'unclip.db').resolve()}"

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir) if self.models_dir else self.data_dir / "models"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from `UNCLIP_<FIELD>` variables (dicts as JSON; an empty one is unset); non-None
        overrides win."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            raw = env.get(f"UNCLIP_{f.name.upper()}")
            if raw is None or not raw.strip():  # `UNCLIP_DATA_DIR=` is unset, not the current folder
                continue
            default = getattr(defaults, f.name)
            try:
                values[f.name] = _parse(raw, default)
            except (ValueError, TypeError) as exc:
                raise _bad(f.name, raw, str(exc)) from None
        if "database_url" not in values and env.get("UNCLIP_DB"):
            values["database_url"] = env["UNCLIP_DB"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
