"""Installed models: the default (bundled) model, loaded at startup, plus folders under the models dir, loaded
on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unclip.engine import Cancelled, InvalidInput
from unclip.engine.components import upsampler_sizes, upscale_limit
from unclip.service.errors import APIError

__all__ = ["ALIASES", "Cancelled", "InvalidInput", "Loader", "ModelRegistry", "real_loader"]

ALIASES = ("dall-e-2",)
Loader = Callable[[Path], Any]


def real_loader(device: str) -> Loader:
    def load(path: Path) -> Any:
        from unclip.engine import Engine

        return Engine.load(path, device=device)

    return load


class ModelRegistry:
    """Names → engines. `dall-e-2` (and an empty model) mean the default model."""

    def __init__(
        self,
        default: Path | None,
        models_dir: Path | None,
        loader: Loader,
        engines: dict[str, Any] | None = None,
    ) -> None:
        self._loader = loader
        self._loaded: dict[str, Any] = dict(engines or {})
        self._given = frozenset(self._loaded)
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()
        if default is not None:
            self._paths[default.name] = default
        if models_dir is not None and models_dir.is_dir():
            from unclip.engine.components import is_model_folder

            for child in sorted(models_dir.iterdir()):  # not lost+found, a backup, a model half copied
                if child.is_dir() and not child.name.startswith(".") and is_model_folder(child):
                    self._paths.setdefault(child.name, child)
        if default is not None:
            self.default = default.name
        elif engines:
            self.default = next(iter(engines))
        else:
            raise ValueError("no model: give a default model path or engines")

    @classmethod
    def from_settings(
        cls, settings: Any, loader: Loader | None = None, engines: dict[str, Any] | None = None
    ) -> ModelRegistry:
        """The default model (settings.model, else the bundled one unless `engines` are given) and the models
        folder, loaded with `loader` (default: `Engine.load` on settings.device)."""
        if settings.model:
            default: Path | None = Path(settings.model)
        elif engines:
            default = None
        else:
            from unclip import BUNDLED_MODEL_DIR

            default = BUNDLED_MODEL_DIR
        return cls(default, settings.models_path, loader or real_loader(settings.device), engines)

    def names(self) -> list[str]:
        return list(dict.fromkeys([self.default, *self._loaded, *self._paths]))

    def created(self, name: str) -> int:
        path = self._paths.get(name)
        try:
            return int(path.stat().st_mtime) if path else 0
        except OSError:
            return 0

    def examples(self, name: str) -> list[str]:
        """Prompts measured to draw well with this model (its examples.json, from `unclip eval examples`)."""
        from unclip.models.examples import read_examples

        path = self._paths.get(name)
        return read_examples(path) if path else []

    def upscale_limit(self, name: str) -> int | None:
        """The longest side this model upscales 4x, from its folder, loaded or not (the API process of a
        deployment with a broker loads no model): 256 with `upsampler-1024`, 64 with `upsampler-256` alone, 0
        without either; None when it is not known (an engine given in memory)."""
        path = self._paths.get(name) if name not in self._given else None
        return None if path is None else upscale_limit(upsampler_sizes(path))

    def resolve(self, name: str | None) -> str:
        if not name or name in ALIASES:
            return self.default
        if name in self._loaded or name in self._paths:
            return name
        raise APIError(
            404,
            f"The model '{name}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    def get(self, name: str) -> Any:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._loader(self._paths[name])
            return self._loaded[name]
