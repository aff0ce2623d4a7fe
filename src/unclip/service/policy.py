"""Bridge to `unclip.safety`: the content policy (re-read when its file changes), repeat-offender rules,
upload checks (safe PNG decoding, realistic faces) and provenance (signed PNG metadata, watermark)."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from unclip.safety.policy import ContentPolicy, default_policy_path
from unclip.safety.provenance import VerifyResult, encode_png, verify
from unclip.safety.uploads import (
    MAX_BYTES,
    MAX_PIXELS,
    UploadError,
    contains_real_face,
    read_image_upload,
    read_mask_upload,
    upload_to_store,  # noqa: F401 (the service stores uploads through this bridge)
)
from unclip.service.errors import APIError

log = logging.getLogger("unclip.service")


class Policy(Protocol):
    def check(self, text: str) -> Any: ...


@dataclass
class OffenderRules:
    throttle_after: int = 3
    suspend_after: int = 10
    window_hours: float = 24.0
    throttle_seconds: float = 60.0  # a throttled user may make one request per this many seconds


class LivePolicy:
    """The content policy file, re-read when it changes.

    `ContentPolicy.load` caches by path and modification time, so calling it per request costs a `stat` and
    picks up an admin's edits. A file that no longer parses is logged and the last good policy stays in force.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_policy_path()
        self._lock = threading.Lock()
        self._good = ContentPolicy.load(self.path)  # a broken file at startup is an error: raise
        self._failed_mtime: int | None = None

    def current(self) -> ContentPolicy:
        try:
            policy = ContentPolicy.load(self.path)
        except Exception:
            mtime = _mtime(self.path)
            if mtime != self._failed_mtime:
                self._failed_mtime = mtime
                log.exception("content policy %s could not be loaded; keeping the previous one", self.path)
            return self._good
        if policy is not self._good:
            with self._lock:
                if policy is not self._good:
                    log.info("content policy %s (re)loaded, version %s", self.path, policy.version)
                    self._good = policy
        return policy

    def check(self, text: str) -> Any:
        return self.current().check(text)

    @property
    def offenders(self) -> Any:
        return self.current().offenders

    def warm_up(self) -> None:
        self.current().warm_up()


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def load_policy(path: str | Path | None = None) -> LivePolicy:
    """The server's content policy: `path` (default: the policy file shipped in `unclip.safety`)."""
    return LivePolicy(path)


def offender_rules(policy: Any) -> OffenderRules:
    """Thresholds from `policy.offenders` (object or dict) when the policy defines them, else defaults."""
    src = getattr(policy, "offenders", None)
    rules = OffenderRules()
    if src is None:
        return rules
    for name in ("throttle_after", "suspend_after", "window_hours", "throttle_seconds"):
        value = src.get(name) if isinstance(src, dict) else getattr(src, name, None)
        if value is not None:
            setattr(rules, name, type(getattr(rules, name))(value))
    return rules


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- uploads --------------------------------------------------------------------------------------------


def _upload_error(exc: UploadError, param: str) -> APIError:
    return APIError(400, exc.message, param=exc.param or param, code=exc.code)


def read_image(data: bytes, param: str = "image", require_square: bool = True) -> Image.Image:
    """A PNG under 4 MB (square unless said) as 8-bit RGB(A), or a 400 answer naming `param`
    (`unclip.safety.uploads`)."""
    try:
        return read_image_upload(data, param=param, require_square=require_square)
    except UploadError as exc:
        raise _upload_error(exc, param) from exc


def read_mask(data: bytes, size: tuple[int, int], param: str = "mask") -> Image.Image:
    """A mask PNG of the image's size as RGBA (transparent = edit), or a 400 answer naming `param`."""
    try:
        return read_mask_upload(data, size=size, param=param)
    except UploadError as exc:
        raise _upload_error(exc, param) from exc


def real_face_refusal(param: str = "image") -> APIError:
    """The answer to an edit or variation of a photo of a real person (same code as prompt refusals)."""
    return APIError(
        400,
        "Your request was rejected as a result of our safety system. The uploaded image appears to be a "
        "photo of a real person: edits and variations of realistic faces are not allowed.",
        param=param,
        code="content_policy_violation",
    )


def has_real_face(img: Image.Image) -> bool:
    """Whether `img` is a photo with a realistic human face. Fails closed: when the detector cannot run
    (OpenCV missing or without its cascades), the request is answered 503 rather than let through."""
    try:
        return bool(contains_real_face(img))
    except Exception as exc:
        log.exception("the face detector failed")
        raise APIError(
            503,
            "The image safety check is unavailable on this server; please try again later.",
            type="server_error",
            code="safety_check_unavailable",
        ) from exc


def face_detector_ready() -> str | None:
    """None when the face detector works, else why not (checked at startup)."""
    try:
        contains_real_face(Image.new("RGB", (64, 64), (128, 128, 128)))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- provenance -----------------------------------------------------------------------------------------


def encode(image: Image.Image, metadata: dict[str, Any]) -> bytes:
    """PNG bytes with signed provenance metadata (`unclip:*` text chunks) and the invisible watermark."""
    return encode_png(image, metadata)


def use_provenance_key(data_dir: Path) -> None:
    """Sign outputs with the server's own key: UNCLIP_PROVENANCE_KEY, else one made on first start in the data
    folder (which the server and its workers share)."""
    import os

    from unclip.safety import provenance
    from unclip.service.storage import load_secret

    key = os.environ.get("UNCLIP_PROVENANCE_KEY", "")
    provenance.use_key(load_secret(data_dir, key, "provenance.key", "UNCLIP_PROVENANCE_KEY"))


VERIFY_FORMATS = ("PNG", "JPEG", "WEBP")


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC


def verify_image(data: bytes, param: str = "image") -> VerifyResult:
    """`unclip.safety.provenance.verify` on an upload (PNG, JPEG or WebP), with 400 answers for bad input."""
    if not data:
        raise APIError(400, f"The uploaded '{param}' is empty.", param=param, code="invalid_image")
    if len(data) >= MAX_BYTES:  # as every other upload
        raise APIError(
            400,
            f"Invalid input image - '{param}' must be less than {MAX_BYTES // (1024 * 1024)} MB, "
            f"got {len(data) / (1024 * 1024):.1f} MB.",
            param=param,
            code="image_too_large",
        )
    try:
        # header only: refuse other formats (and their decoders) and oversized images before decoding
        img = Image.open(io.BytesIO(data), formats=list(VERIFY_FORMATS))
    except UnidentifiedImageError as exc:
        raise APIError(
            400,
            f"Invalid input image - '{param}' must be a PNG, JPEG or WebP image.",
            param=param,
            code="invalid_image_format",
        ) from exc
    except Image.DecompressionBombError as exc:
        raise APIError(
            400, f"Invalid input image - '{param}' is too large.", param=param, code="image_too_large"
        ) from exc
    except Exception as exc:
        raise APIError(
            400, f"Invalid input image - '{param}' could not be read.", param=param, code="invalid_image"
        ) from exc
    if img.width * img.height > MAX_PIXELS:
        raise APIError(
            400,
            f"Invalid input image - '{param}' is {img.width}x{img.height}; the limit is 4096x4096 pixels.",
            param=param,
            code="image_too_large",
        )
    if img.format == "PNG" and PNG_END not in data:  # bytes after the end chunk are harmless (and common)
        raise APIError(
            400,
            f"Invalid input image - '{param}' is truncated (no PNG end chunk).",
            param=param,
            code="invalid_image",
        )
    try:
        img.load()
        return verify(img)
    except ValueError as exc:  # verify's own size limit
        raise APIError(400, str(exc), param=param, code="image_too_large") from exc
    except Exception as exc:  # truncated or corrupt data
        raise APIError(
            400,
            f"Invalid input image - '{param}' could not be decoded.",
            param=param,
            code="invalid_image",
        ) from exc
