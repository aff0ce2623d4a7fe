from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from unclip.safety.policy import ContentPolicy, default_policy_path

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session")
def rules_policy() -> ContentPolicy:
    """The shipped policy with the classifier off: rules, allow-list and settings only (fast)."""
    import yaml

    config: dict[str, Any] = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    config["classifier"] = {**config.get("classifier", {}), "enabled": False}
    return ContentPolicy(config)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def write_prompt_set(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A labelled prompt CSV (text, label, category, split) of `rows`."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "category", "split"])
        w.writerows(rows)
    return path
