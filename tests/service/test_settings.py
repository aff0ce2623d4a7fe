"""Settings from UNCLIP_* variables: a value the server cannot run with stops it at the start, naming the
variable, instead of a 500 on every request (or a price that pays the user, or a guessable key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unclip.cli import app
from unclip.service.settings import Settings


def test_values_are_read_as_their_types() -> None:
    env = {"UNCLIP_PORT": "9001", "UNCLIP_SIGNUP_OPEN": "off", "UNCLIP_REQUEST_TIMEOUT_S": "12.5",
           "UNCLIP_RATE_LIMITS": '{"member": 0}', "UNCLIP_PUBLIC_URL": "https://img.example.test"}  # fmt: skip
    s = Settings.from_env(env)
    assert (s.port, s.signup_open, s.request_timeout_s) == (9001, False, 12.5)
    assert s.rate_limits["member"] == 0 and s.rate_limits["trusted"] == 120  # merged with the defaults


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PORT", "abc", "a whole number"),
        ("PORT", "70000", "a port number"),
        ("URL_TTL_S", "0", "above 0"),
        ("QUEUE_SIZE", "-5", "above 0"),
        ("REQUEST_TIMEOUT_S", "nan", "above 0"),
        ("SHUTDOWN_GRACE_S", "inf", "0 or more"),
        ("LEASE_S", "0", "above 0"),
        ("MAX_REQUEST_BYTES", "20MB", "a whole number"),
        ("SIGNUP_OPEN", "ture", "one of 1, true"),
        ("RATE_LIMITS", "{bad", "a JSON object"),
        ("RATE_LIMITS", "[1, 2]", "a JSON object"),
        ("RATE_LIMITS", '{"member": "lots"}', "requests per minute"),
        ("RATE_LIMITS", '{"memebr": 5}', "keys among admin"),
        ("CREDIT_COSTS", '{"256x256": -5}', "0 or more"),
        ("CREDIT_COSTS", '{"256x256": "1"}', "whole number of credits"),
        ("CREDIT_GRANTS", '{"member": true}', "whole number of credits"),
        ("UPSCALE_COST", "-1", "0 or more"),
        ("FEATURES", '{"generate": null}', "a list of roles"),
        ("FEATURES", '{"generate": ["admin", "members"]}', "a list of roles"),
        ("FEATURES", '{"genrate": ["admin"]}', "one of generate"),
        ("PUBLIC_URL", "images.example.com", "http:// or https://"),
        ("ADMIN_KEY", "a", "at least 16 characters"),
        ("SECRET_KEY", "short", "at least 16 characters"),
        ("DATABASE_URL", "sqlite:///", "not one in memory"),
        ("DATABASE_URL", "sqlite:///:memory:", "not one in memory"),
        ("MODEL", "/nonexistent/model", "a folder that exists"),
        ("DEVICE", "gpu", "cpu, cuda, cuda:N"),
        ("DEVICE", "cuda:x", "cpu, cuda, cuda:N"),
        ("DEVICE", "cuda:64", "a GPU this machine has"),
    ],
)
def test_a_value_the_server_cannot_run_with_is_named_at_the_start(name: str, value: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        Settings.from_env({f"UNCLIP_{name}": value})
    assert str(err.value).startswith(f"UNCLIP_{name}=") and says in str(err.value), str(err.value)


def test_the_admin_key_is_read_without_surrounding_blanks() -> None:
    assert Settings.from_env({"UNCLIP_ADMIN_KEY": " sk-unclip-0123456789abcdef\n"}).admin_key == (
        "sk-unclip-0123456789abcdef"
    )


def test_serve_says_what_is_wrong_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNCLIP_CREDIT_COSTS", '{"256x256": -5}')
    r = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "var")])
    assert r.exit_code == 2 and "UNCLIP_CREDIT_COSTS" in r.stderr and "Traceback" not in r.output, r.output
    monkeypatch.delenv("UNCLIP_CREDIT_COSTS")
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "secret.key").write_text("")  # emptied: anyone could sign image URLs with it
    r = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "var")])
    assert r.exit_code == 2 and "secret.key holds 0 characters" in r.stderr, r.output


def test_a_port_in_use_is_found_before_the_first_start_key_is_shown(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--port", str(port), "--data-dir", str(tmp_path / "var")])
    assert r.exit_code != 0 and "Address already in use" in r.output, r.output
    assert "First start" not in r.output and "sk-unclip-" not in r.output


def test_serve_stops_when_the_broker_cannot_be_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Otherwise it starts, takes jobs and charges for them, and nothing ever runs them."""
    from unclip.service import app as service_app

    from .conftest import free_port

    monkeypatch.setattr(service_app, "BROKER_WAIT_S", 0.5)
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    r = CliRunner().invoke(app, ["serve", "--broker", url, "--data-dir", str(tmp_path / "var")])
    assert r.exit_code == 1 and "cannot reach the broker at redis://…@127.0.0.1" in r.stderr, r.output
    assert "hunter2" not in r.output and "Traceback" not in r.output and "First start" not in r.output


def test_serve_says_when_it_creates_a_new_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt database path starts an empty server: the operator is told a new one was made."""
    import socket

    db = tmp_path / "var" / "unclpi.db"
    monkeypatch.setenv("UNCLIP_DATABASE_URL", f"sqlite:///{db}")
    with socket.socket() as taken:  # the server stops at binding, after the note
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        args = ["serve", "--port", str(taken.getsockname()[1]), "--data-dir", str(tmp_path / "var")]
        r = CliRunner().invoke(app, args)
        assert r.exit_code != 0 and f"created a new database at {db}" in r.stderr, r.output
        r = CliRunner().invoke(app, args)
        assert r.exit_code != 0 and "created a new database" not in r.stderr, r.output


def test_an_empty_variable_is_unset() -> None:
    """`UNCLIP_DATA_DIR=` put the data in the current folder; `UNCLIP_DATABASE_URL=` hid UNCLIP_DB."""
    default = Settings()
    got = Settings.from_env({"UNCLIP_DATA_DIR": "", "UNCLIP_DATABASE_URL": " ", "UNCLIP_DB": "sqlite:////tmp/x.db"})
    assert got.data_dir == default.data_dir and got.database_url == "sqlite:////tmp/x.db"
