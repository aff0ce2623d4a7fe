"""The engine: pipelines over a model folder (generate, edit, outpaint, vary, blend, upscale)."""

import os

# OpenMP threads that spin while waiting for each other stall for whole scheduler slices when the CPU is
# shared (a server's other work, a training job): measured 10-20x slower with 2 threads on a busy 2-core
# machine, and no slower than 1 thread with passive waiting. Only takes effect if torch is not loaded yet;
# an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING, Any

from unclip.engine.errors import Cancelled, InvalidInput

if TYPE_CHECKING:
    from unclip.engine.engine import Engine

__all__ = ["Cancelled", "Engine", "InvalidInput"]


def __getattr__(name: str) -> Any:
    # Engine (torch, diffusers) loads when it is asked for: the torch-free parts (errors, masks) are used by
    # the safety checks and the CLI without it
    if name == "Engine":
        from unclip.engine.engine import Engine

        return Engine
    raise AttributeError(f"module 'unclip.engine' has no attribute {name!r}")
