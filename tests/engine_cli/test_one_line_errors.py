"""`unclip` commands answer a missing or malformed file, a folder that is not what it should be, or a database
that cannot be reached with one line on stderr (they printed tracebacks of hundreds of lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def unclip(*args: str, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNCLIP_")} | {"NO_COLOR": "1"}
    if debug:
        env["UNCLIP_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "unclip.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["policy", "check", "a cat", "--policy", "bad.yaml"], 2, "bad.yaml: not valid YAML"),
        (["policy", "check", "a cat", "--policy", "missing.yaml"], 2, "missing.yaml"),
        (["users", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"], 1, "Connection refused"),
        (["serve", "--model", "empty", "--port", "1"], 2, "a model folder"),
        (["train", "prior", "--config", "tiny", "--data", "nowhere"], 2, "not a dataset folder"),
    ],
)
def test_an_error_is_one_line(args: list[str], code: int, says: str, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [1\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "tiny").mkdir()  # a folder named like a config is not read as one
    run = unclip(*args, cwd=tmp_path)
    assert run.returncode == code and says in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) <= 8, run.stderr  # one line, or typer's box around a bad option


def test_unclip_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [1\n")
    run = unclip("policy", "check", "a cat", "--policy", "bad.yaml", cwd=tmp_path, debug=True)
    assert run.returncode != 0 and "Traceback" in run.stderr
