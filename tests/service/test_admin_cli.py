"""`unclip users …`, `unclip keys …`, `unclip admin migrate` on a SQLite data folder."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from unclip.cli import app

runner = CliRunner()


def _run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def test_a_folder_without_a_database_is_named_not_filled(tmp_path: Path) -> None:
    empty = tmp_path / "typo"
    for args in (("users", "list"), ("users", "credits", "a@b.c", "5"), ("keys", "list", "a@b.c")):
        r = _run(*args, "--data-dir", empty)
        assert r.exit_code == 1 and "no database in" in r.stderr and "admin migrate" in r.stderr
    assert not empty.exists() and not list(tmp_path.iterdir())


def test_accounts_from_the_shell(tmp_path: Path) -> None:
    var = tmp_path / "var"
    assert _run("admin", "migrate", "--data-dir", var).exit_code == 0 and (var / "unclip.db").is_file()
    r = _run("users", "add", "ann@example.com", "--role", "waitlisted", "--data-dir", var)
    assert r.exit_code == 0 and "api key (shown once): " in r.output
    r = _run("users", "list", "--role", "waitlisted", "--data-dir", var)
    assert "ann@example.com" in r.output and "waitlisted" in r.output
    r = _run("users", "approve", "ann@example.com", "--data-dir", var)
    assert r.exit_code == 0 and "ann@example.com: member" in r.output
    r = _run("users", "credits", "ann@example.com", "7", "--data-dir", var)
    assert r.exit_code == 0 and "credits" in r.output
    key = _run("keys", "create", "ann@example.com", "--name", "laptop", "--data-dir", var).output.strip()
    assert key and "laptop" in _run("keys", "list", "ann@example.com", "--data-dir", var).output
    r = _run("users", "role", "nobody@example.com", "trusted", "--data-dir", var)
    assert r.exit_code == 1 and "no user" in r.stderr
