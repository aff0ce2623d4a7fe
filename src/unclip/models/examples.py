"""A model folder's example prompts (examples.json): prompts measured to draw well with it, written by
`unclip eval examples` (unclip.evaluation.examples), listed by the server with the model."""

from __future__ import annotations

import json
from pathlib import Path

FILE = "examples.json"


def read_examples(model_dir: Path) -> list[str]:
    """The measured example prompts of a model folder (none when it has no examples.json)."""
    try:
        data = json.loads((Path(model_dir) / FILE).read_text())
        return [str(e["prompt"]) for e in data.get("examples", []) if e.get("prompt")]
    except (OSError, ValueError, TypeError, KeyError):
        return []
