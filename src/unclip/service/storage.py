"""Content-addressed image storage on disk, and signed, expiring image URLs."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import tempfile
import time
from pathlib import Path

from PIL import Image

from unclip.service.errors import APIError
from unclip.service.settings import MIN_KEY_CHARS


class BlobStore:
    """Blobs live at `<root>/<sha[:2]>/<sha[2:4]>/<sha>.png`; writes are atomic (temp + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def check_writable(self) -> None:
        """OSError naming the folder when images cannot be written there (found at the start, not after a
        job's whole compute)."""
        try:
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise OSError(f"the images folder {self.root} is not writable: {exc.strerror or exc}") from None

    def path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError("not a sha256 digest")
        return self.root / sha[:2] / sha[2:4] / f"{sha}.png"

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.path(sha)
        if dest.exists():
            return sha
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # the rename (and the shard folders it may have needed) survive a power loss, as the row pointing to it
        for folder in (dest.parent, dest.parent.parent, self.root):
            _fsync_dir(folder)
        return sha

    def get(self, sha: str) -> bytes:
        try:
            return self.path(sha).read_bytes()
        except FileNotFoundError:
            # the row outlived its file (a deleted or restored data folder): a clear 404, not a 500
            raise APIError(
                404, "This image's file is missing from storage.", code="image_file_missing"
            ) from None

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def open_image(self, sha: str) -> Image.Image:
        img = Image.open(io.BytesIO(self.get(sha)))
        img.load()
        return img


def load_secret(
    data_dir: Path, configured: str = "", name: str = "secret.key", variable: str = "UNCLIP_SECRET_KEY"
) -> bytes:
    """A secret: configured, or generated once and kept in `<data_dir>/<name>` (readable by its owner only).
    One under MIN_KEY_CHARS (an emptied file: anyone could sign with it) stops the server."""
    if configured:
        key = configured.encode()
        where = variable
    else:
        path = Path(data_dir) / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32).encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
            return key
        key, where = path.read_bytes().strip(), str(path)
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(
            f"{where} holds {len(key)} characters, fewer than {MIN_KEY_CHARS}: a key that short can be guessed; "
            + ("set a longer one" if configured else "delete the file (a new key is made) or set a longer one")
        )
    return key


class UrlSigner:
    def __init__(self, secret: bytes, ttl_s: int = 3600) -> None:
        self.secret = secret
        self.ttl_s = ttl_s

    def _sig(self, image_id: str, expires: int) -> str:
        return hmac.new(self.secret, f"{image_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, image_id: str, now: float | None = None) -> tuple[int, str]:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return expires, self._sig(image_id, expires)

    def query(self, image_id: str) -> str:
        expires, sig = self.sign(image_id)
        return f"expires={expires}&sig={sig}"

    def verify(self, image_id: str, expires: int, sig: str, now: float | None = None) -> bool:
        if (time.time() if now is None else now) > expires:
            return False
        # compare bytes: compare_digest refuses str with non-ASCII characters (a TypeError, i.e. a 500)
        return hmac.compare_digest(self._sig(image_id, expires).encode(), sig.encode("utf-8", "replace"))


def _fsync_dir(folder: Path) -> None:
    """Best effort: a platform or file system without directory sync (Windows, some network or FUSE mounts)
    keeps the rename as durable as it gets there; a stored image is never refused for it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
