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


def test_approve_refuses_someone_not_on_the_waitlist(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _run("admin", "migrate", "--data-dir", var)
    _run("users", "add", "root@example.com", "--role", "admin", "--data-dir", var)
    r = _run("users", "approve", "root@example.com", "--data-dir", var)
    assert r.exit_code == 1 and "not on the waitlist (role: admin)" in r.stderr
    assert "root@example.com" in _run("users", "list", "--role", "admin", "--data-dir", var).output


def test_a_sqlite_url_without_its_file_is_named_not_created(tmp_path: Path, monkeypatch) -> None:
    typo = tmp_path / "typo" / "unclip.db"
    for args in (("users", "list"), ("users", "add", "a@b.c")):
        r = _run(*args, "--db", f"sqlite:///{typo}")
        assert r.exit_code == 1 and f"no database at {typo}" in r.stderr
    assert not typo.parent.exists()
    var = tmp_path / "var"
    _run("admin", "migrate", "--data-dir", var)
    monkeypatch.setenv("UNCLIP_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    r = _run("users", "list", "--data-dir", var)  # two databases named: neither is guessed
    assert r.exit_code == 1 and "unset UNCLIP_DATABASE_URL or pass --db" in r.stderr


def test_negative_credits_and_unknown_roles(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _run("admin", "migrate", "--data-dir", var)
    _run("users", "add", "ann@example.com", "--data-dir", var)
    before = int(_run("users", "credits", "ann@example.com", "0", "--data-dir", var).output.split()[1])
    r = _run("users", "credits", "ann@example.com", "-5", "--data-dir", var)
    assert r.exit_code == 0 and f"{before - 5} credits" in r.output
    r = _run("users", "list", "--role", "admni", "--data-dir", var)
    assert r.exit_code == 1 and "unknown role 'admni'" in r.stderr
