"""Bridge to `unclip.safety`: content policy, upload checks and provenance, with repeat-offender handling.

The imports are guarded so the server still imports while `unclip.safety` is missing; the fallbacks
are minimal (the policy flags nothing and logs a warning) and are replaced as soon as the package exists.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from unclip.service.errors import APIError

log = logging.getLogger("unclip.service")

MAX_UPLOAD_BYTES = 4 * 1024 * 1024


class Policy(Protocol):
    def check(self, text: str) -> Any: ...


@dataclass
class Decision:
    flagged: bool = False
    categories: dict[str, bool] = field(default_factory=dict)
    category_scores: dict[str, float] = field(default_factory=dict)
    category: str | None = None


class _AllowAll:
    """Used only when `unclip.safety` is not installed: flags nothing."""

    def check(self, text: str) -> Decision:
        return Decision()


@dataclass
class OffenderRules:
    throttle_after: int = 3
    suspend_after: int = 6
    window_hours: float = 24.0
    throttle_seconds: float = 60.0  # a throttled user may make one request per this many seconds


def load_policy() -> Policy:
    try:
        from unclip.safety.policy import ContentPolicy
    except ImportError:
        log.warning("unclip.safety is not installed: prompts are NOT checked against a content policy")
        return _AllowAll()
    return ContentPolicy.load()


def offender_rules(policy: Any) -> OffenderRules:
    """Thresholds from `policy.offenders` (object or dict) when the policy defines them, else defaults."""
    src = getattr(policy, "offenders", None)
    if src is None:
        settings = getattr(policy, "settings", None)
        src = getattr(settings, "offenders", None) if settings is not None else None
        if src is None and isinstance(settings, dict):
            src = settings.get("offenders")
    rules = OffenderRules()
    for name in ("throttle_after", "suspend_after", "window_hours", "throttle_seconds"):
        value = src.get(name) if isinstance(src, dict) else getattr(src, name, None)
        if value is not None:
            setattr(rules, name, type(getattr(rules, name))(value))
    return rules


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- uploads --------------------------------------------------------------------------------------------


def _fallback_image(data: bytes, param: str) -> Image.Image:
    if len(data) >= MAX_UPLOAD_BYTES or not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise APIError(
            400, "Uploaded image must be a PNG and less than 4 MB.", param=param, code="invalid_image"
        )
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise APIError(
            400, "Invalid input image - could not decode the PNG.", param=param, code="invalid_image"
        ) from exc
    if img.width != img.height:
        raise APIError(400, "Uploaded image must be square.", param=param, code="invalid_image_shape")
    return img.convert("RGBA") if img.mode in ("RGBA", "LA", "PA", "P") else img.convert("RGB")


def read_image(data: bytes, param: str = "image") -> Image.Image:
    """A square PNG under 4 MB, or a 400 answer naming `param`."""
    try:
        from unclip.safety.uploads import UploadError, read_image_upload
    except ImportError:
        return _fallback_image(data, param)
    try:
        return read_image_upload(data, param=param)
    except UploadError as exc:
        raise _upload_error(exc, param) from exc


def read_mask(data: bytes, size: tuple[int, int], param: str = "mask") -> Image.Image:
    try:
        from unclip.safety.uploads import UploadError, read_mask_upload
    except ImportError:
        img = _fallback_image(data, param)
        if img.size != tuple(size):
            raise APIError(
                400,
                "Invalid mask - the mask and the image must have the same dimensions.",
                param=param,
                code="invalid_mask",
            ) from None
        return img.convert("RGBA")
    try:
        return read_mask_upload(data, size=size, param=param)
    except UploadError as exc:
        raise _upload_error(exc, param) from exc


def _upload_error(exc: Exception, param: str) -> APIError:
    message = getattr(exc, "message", None) or str(exc)
    return APIError(400, message, param=getattr(exc, "param", None) or param, code=getattr(exc, "code", None))


def has_real_face(img: Image.Image) -> bool:
    try:
        from unclip.safety.uploads import contains_real_face
    except ImportError:
        return False
    try:
        return bool(contains_real_face(img))
    except Exception:  # the detector is optional (opencv); never fail a request on it
        log.exception("face detector failed")
        return False


def encode(image: Image.Image, metadata: dict[str, Any]) -> bytes:
    """PNG bytes with provenance (text chunks + watermark) when `unclip.safety` is present."""
    try:
        from unclip.safety.provenance import encode_png
    except ImportError:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        for k, v in metadata.items():
            info.add_text(f"unclip:{k}", str(v))
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()
    return encode_png(image, metadata)
