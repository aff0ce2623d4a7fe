"""The engine: pipelines over a model folder (generate, edit, outpaint, vary, blend, upscale)."""

from unclip.engine.engine import Engine
from unclip.engine.errors import Cancelled, InvalidInput

__all__ = ["Cancelled", "Engine", "InvalidInput"]
