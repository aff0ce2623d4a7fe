"""WebDataset tar shards in img2dataset's layout: `{key}.png`, `{key}.txt`, `{key}.json` per sample."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ShardWriter:
    def __init__(self, folder: Path, prefix: str, max_count: int = 2000) -> None:
        self.folder, self.prefix, self.max_count = folder, prefix, max_count
        folder.mkdir(parents=True, exist_ok=True)
        self.index, self.count, self.total = 0, 0, 0
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None

    def _open(self) -> tarfile.TarFile:
        if self._tar is None or self.count >= self.max_count:
            self.close()
            path = self.folder / f"{self.prefix}-{self.index:05d}.tar"
            self.index += 1
            self.count = 0
            self.paths.append(path)
            self._tar = tarfile.open(path.with_suffix(".tar.part"), "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        return self._tar

    def write(self, key: str, files: dict[str, bytes | str | dict]) -> None:
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} may not contain '.' or '/'")
        tar = self._open()
        for ext, value in files.items():
            if isinstance(value, dict):
                value = json.dumps(value, ensure_ascii=False, sort_keys=True)
            data = value.encode() if isinstance(value, str) else value
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        self.count += 1
        self.total += 1

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            part = self.paths[-1].with_suffix(".tar.part")
            part.replace(self.paths[-1])
            self._tar = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_name(name: str) -> tuple[str, str]:
    """WebDataset's (key, extension) of a member name: the key keeps the folder and ends at the first '.' of
    the file name, so "a/b/0001.alpha.png" is ("a/b/0001", "alpha.png")."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def iter_tar(path: Path) -> Iterator[dict[str, Any]]:
    """Samples of one tar shard (plain or compressed, read as a stream) as {"__key__": key, ext: bytes};
    consecutive members with the same key form a sample."""
    with tarfile.open(path, mode="r|*") as tar:
        current: dict[str, Any] = {}
        for member in tar:
            if not member.isfile():
                continue
            key, ext = split_name(member.name.removeprefix("./"))
            if not ext or key.endswith("/") or not key:
                continue  # no extension, or a hidden file such as macOS's "._0001.jpg"
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            fh = tar.extractfile(member)
            current[ext] = fh.read() if fh else b""
        if current:
            yield current


def iter_samples(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """Samples of WebDataset shards, in order; see `iter_tar`."""
    for path in paths:
        yield from iter_tar(path)
