"""Pinned npm packages that the emoji dataset is built from, fetched with `npm pack` into a cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    license: str
    attribution: str

    @property
    def tarball(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


# Every package and version the dataset depends on, in one place. NOTICE repeats this table.
STYLE_SOURCES: dict[str, Source] = {
    "twemoji": Source(
        "@iconify-json/twemoji", "1.2.5", "CC-BY-4.0", "Twemoji © Twitter, Inc and other contributors"
    ),
    "noto": Source("@iconify-json/noto", "1.2.9", "Apache-2.0", "Noto Emoji © Google Inc."),
    "openmoji": Source("@iconify-json/openmoji", "1.2.29", "CC-BY-SA-4.0", "OpenMoji © HfG Schwäbisch Gmünd"),
    "fluent-emoji-flat": Source(
        "@iconify-json/fluent-emoji-flat", "1.2.6", "MIT", "Fluent Emoji © Microsoft Corporation"
    ),
    "fluent-emoji": Source(
        "@iconify-json/fluent-emoji", "1.2.7", "MIT", "Fluent Emoji © Microsoft Corporation"
    ),
    "fluent-emoji-high-contrast": Source(
        "@iconify-json/fluent-emoji-high-contrast", "1.2.6", "MIT", "Fluent Emoji © Microsoft Corporation"
    ),
    "emojione": Source(
        "@iconify-json/emojione", "1.2.3", "CC-BY-4.0", "Emoji One © Ranks.com (EmojiOne 2.2)"
    ),
}
EMOJIBASE = Source("emojibase-data", "17.0.0", "MIT", "Emojibase © Miles Johnson")
STYLES = tuple(STYLE_SOURCES)


class FetchError(RuntimeError):
    pass


def fetch(source: Source, cache_dir: Path) -> Path:
    """Return the unpacked `package/` folder of `source`, running `npm pack` only when it is not cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    unpacked = cache_dir / source.tarball.removesuffix(".tgz")
    if (unpacked / "package" / "package.json").exists():
        return unpacked / "package"
    tgz = cache_dir / source.tarball
    if not tgz.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise FetchError(
                f"npm is needed to fetch {source.package}@{source.version}, or put {tgz.name} in {cache_dir}"
            )
        proc = subprocess.run(
            [npm, "pack", f"{source.package}@{source.version}", "--silent"],
            cwd=cache_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not tgz.exists():
            raise FetchError(
                f"npm pack {source.package}@{source.version} failed: {proc.stderr.strip()[-500:]}"
            )
    tmp = unpacked.with_suffix(".part")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(tmp, filter="data")
    version = json.loads((tmp / "package" / "package.json").read_text())["version"]
    if version != source.version:
        raise FetchError(f"{tgz.name} holds version {version}, expected {source.version}")
    tmp.rename(unpacked)
    return unpacked / "package"


def fetch_all(cache_dir: Path) -> tuple[dict[str, Path], Path]:
    styles = {style: fetch(src, cache_dir) for style, src in STYLE_SOURCES.items()}
    return styles, fetch(EMOJIBASE, cache_dir)
