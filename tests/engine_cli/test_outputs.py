"""Where the image commands write: never over another file, never a partial one."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

from unclip.cli import common
from unclip.cli.common import CliError


def test_a_taken_name_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Names were checked and then written, so two runs at the same moment wrote one file twice."""
    path = tmp_path / "20261207-generate-cat-5.png"
    path.write_bytes(b"the other run's")
    got = common._write_new(path, b"mine")
    assert got == tmp_path / "20261207-generate-cat-5-1.png" and got.read_bytes() == b"mine"
    assert path.read_bytes() == b"the other run's" and capsys.readouterr().out == f"{got}\n"


def test_a_file_that_cannot_be_written_whole_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk left a truncated PNG under the name the next run would skip."""
    real_open = Path.open

    class HalfWritten(io.FileIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            super().write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_(self: Path, mode: str = "r", *args: object, **kw: object):  # type: ignore[no-untyped-def]
        return HalfWritten(str(self), "x") if mode == "xb" else real_open(self, mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(CliError, match="No space left"):
        common._write_new(tmp_path / "a.png", b"x" * 100)
    assert list(tmp_path.iterdir()) == []
