"""The engine: pipelines over a model folder (generate, edit, outpaint, vary, blend, upscale)."""

import os

# OpenMP threads that spin while waiting for each other stall for whole scheduler slices when the CPU is
# shared (a server's other work, a training job): measured 10-20x slower with 2 threads on a busy 2-core
# machine, and no slower than 1 thread with passive waiting. Only takes effect if torch is not loaded yet;
# an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from unclip.engine.engine import Engine
from unclip.engine.errors import Cancelled, InvalidInput

__all__ = ["Cancelled", "Engine", "InvalidInput"]
