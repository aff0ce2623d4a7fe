"""The image service: checks, credits and job submission behind the image routes, and response building."""

from __future__ import annotations

import base64
import logging
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from unclip.engine import InvalidInput, outpaint
from unclip.service import credits
from unclip.service.auth import Principal, require_active, require_feature
from unclip.service.db import AuditEvent, ImageRecord, Job, User, new_id, now
from unclip.service.errors import APIError, content_policy, invalid, missing, rate_limited
from unclip.service.policy import has_real_face, prompt_hash, real_face_refusal, upload_to_store
from unclip.service.runner import TERMINAL

log = logging.getLogger("unclip.service")
SIZES = ("256x256", "512x512", "1024x1024")
FORMATS = ("url", "b64_json")
VIEWER_SETTINGS = ("size", "n", "steps", "guidance", "negative_prompt", "left", "right", "top", "bottom")
SIZED_BY_INPUT = ("upscale", "outpaint")  # their output's size is the input's: `size` and `n` do not apply
OF_UPLOAD = "of_upload"  # an upscale's job param: its input was not one of the caller's own results
MAX_PROMPT = 1000
FEATURE_OF = {
    "generation": "generate",
    "edit": "edit",
    "variation": "variation",
    "outpaint": "outpaint",
    "blend": "blend",
    "upscale": "upscale",
}
WHAT = {
    "generate": "image generation",
    "edit": "image edits",
    "edit_upload": "edits of uploaded images",
    "variation": "variations",
    "outpaint": "outpainting",
    "blend": "blends",
    "upscale": "upscaling",
    "real_face_upload": "uploads of photos of real people",
}


# --- parameter checks (OpenAI's messages and codes) -------------------------------------------------------


def _visible(text: str) -> bool:
    """Whether a text has any character that shows: not only spaces, zero-width or other format characters."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc", "Zs") for ch in text)


def check_prompt(prompt: Any, required: bool = True, param: str = "prompt") -> str | None:
    if prompt is None:
        if required:
            raise missing(param)
        return None
    if not isinstance(prompt, str):
        raise invalid(
            f"Invalid type for '{param}': expected a string, but got a value of another type.",
            param,
            "invalid_type",
        )
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(
            f"Invalid '{param}': it contains characters that are not valid Unicode (unpaired surrogates).",
            param,
            "invalid_value",
        ) from None
    if required and not _visible(prompt):
        raise invalid(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, but got an "
            "empty string instead.",
            param,
            "empty_string",
        )
    if len(prompt) > MAX_PROMPT:
        raise invalid(
            f"Invalid '{param}': string too long. Expected a string with maximum length {MAX_PROMPT}, "
            f"but got a string with length {len(prompt)} instead.",
            param,
            "string_above_max_length",
        )
    return prompt


MAX_USER = 256  # OpenAI's end-user identifier: an id, not a document
MAX_MODEL = 200


def check_text(value: Any, name: str, limit: int) -> str | None:
    """An optional free-text field: a string of at most `limit` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(
            f"Invalid type for '{name}': expected a string, but got a value of another type.",
            name,
            "invalid_type",
        )
    if len(value) > limit:
        raise invalid(
            f"Invalid '{name}': string too long. Expected a string with maximum length {limit}, but got a string "
            f"with length {len(value)} instead.",
            name,
            "string_above_max_length",
        )
    return value


def check_n(n: Any) -> int:
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise invalid(
            "Invalid type for 'n': expected an integer, but got a value of another type.", "n", "invalid_type"
        )
    if n < 1:
        raise invalid(
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead.",
            "n",
            "integer_below_min_value",
        )
    if n > 10:
        raise invalid(
            f"Invalid 'n': integer above maximum value. Expected a value <= 10, but got {n} instead.",
            "n",
            "integer_above_max_value",
        )
    return n


def check_choice(value: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        listed = ", ".join(f"'{c}'" for c in choices[:-1]) + f", and '{choices[-1]}'"
        raise invalid(f"Invalid value: '{value}'. Supported values are: {listed}.", name, "invalid_value")
    return str(value)


def check_unsupported(params: dict[str, Any], allowed_defaults: dict[str, tuple[Any, ...]]) -> None:
    """Parameters of the contract that only other OpenAI models take: accepted at their default, else 400."""
    for name, defaults in allowed_defaults.items():
        value = params.get(name)
        # by type too: `0 == False` and `100.0 == 100` in Python, but not in the contract
        if value is not None and not any(type(value) is type(d) and value == d for d in defaults):
            raise invalid(
                f"The '{name}' parameter is not supported with the dall-e-2 model.",
                name,
                "unsupported_parameter",
            )


def withheld(image_id: str | None, param: str = "image_id") -> APIError:
    """410 for an image withheld after a review; without `image_id`, an upload of its bytes (whose id is not
    told: it may be someone else's)."""
    what = f"Image '{image_id}'" if image_id else f"The uploaded '{param}'"
    return APIError(
        410, f"{what} was withheld after a review under the content policy.", param=param, code="image_withheld"
    )


@dataclass
class Submission:
    kind: str
    model: str | None
    prompt: str | None
    n: int = 1
    size: str = "1024x1024"
    response_format: str = "url"
    params: dict[str, Any] = field(default_factory=dict)  # extra engine params (seed, sides, items…)
    uploads: dict[str, tuple[bytes, Image.Image]] = field(default_factory=dict)  # checked uploads
    refs: dict[str, str] = field(default_factory=dict)  # param → sha of the user's own stored image
    prompts: list[str] = field(default_factory=list)  # more text to check (blend items)
    user: str | None = None
    safety_identifier: str | None = None  # OpenAI's newer name for a stable id of the end user
    request_id: str | None = None  # the HTTP request's x-request-id, kept in the outputs' provenance
    image_size: tuple[int, int] | None = None  # the input image's (width, height), for what an outpaint costs


class ImageService:
    def __init__(self, services: Any) -> None:
        self.sv = services
        # job id → (user id, throttle turn) of a throttled user's job in flight: given back when the engine
        # refuses the request as malformed (a typo takes no turn), kept when the job ends any other way
        self._turns: dict[str, tuple[str, float]] = {}
        self._turns_lock = threading.Lock()

    # --- checks before any compute ---------------------------------------------------------------------

    def rate_headers(self, p: Principal) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the caller's key."""
        rpm = int(self.sv.settings.rate_limits.get(p.role, 0))
        if rpm <= 0:
            return {}
        remaining, reset = self.sv.limiter.status(p.key_id, rpm)
        return {
            "x-ratelimit-limit-requests": str(rpm),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset:.3f}s",
        }

    def admit(self, p: Principal) -> None:
        """Account state, then the rate limit (per key): a waitlisted or suspended account is told so, not to
        retry later."""
        st = self.sv.settings
        require_active(p)
        wait = self.sv.limiter.hit(p.key_id, int(st.rate_limits.get(p.role, 0)))
        if wait is not None:
            rpm = st.rate_limits.get(p.role, 0)
            raise rate_limited(
                f"Rate limit reached for requests on this API key: limit {rpm} per minute. "
                f"Please try again in {wait:.1f}s.",
                wait,
            )

    def throttle(self, p: Principal) -> float | None:
        """The repeat-offender throttle: one request per `throttle_seconds`, taken by a request that passed
        its checks (a typo does not use up the minute). The turn this request took (for `give_back`), if any."""
        rules = self.sv.offenders
        if self.recent_offences(p.user_id) < rules.throttle_after:
            return None
        wait, turn = self.sv.limiter.take_turn(p.user_id, rules.throttle_seconds)
        if wait is not None:
            raise rate_limited(
                "Your requests are throttled after repeated content policy violations. "
                f"Please try again in {wait:.0f}s.",
                wait,
            )
        return turn

    def recent_offences(self, user_id: str) -> int:
        since = now() - self.sv.offenders.window_hours * 3600
        with self.sv.db.session() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(
                        AuditEvent.user_id == user_id,
                        AuditEvent.created_at >= since,
                        AuditEvent.review != "overturned",  # a refusal an admin overturned is no offence
                    )
                )
                or 0
            )

    def check_policy(self, p: Principal, texts: list[str], endpoint: str) -> None:
        for text in texts:
            decision = self.sv.policy.check(text)
            if getattr(decision, "flagged", False):
                self._record_offence(p, decision, text, endpoint)
                raise content_policy()

    def _record_offence(self, p: Principal, decision: Any, text: str, endpoint: str) -> None:
        category = getattr(decision, "category", None) or ""
        scores = getattr(decision, "category_scores", {}) or {}
        score = float(scores.get(category, max(scores.values(), default=0.0)))
        count = self.recent_offences(p.user_id) + 1
        rules = self.sv.offenders
        action = "refused"
        if count >= rules.suspend_after:
            action = "suspended"
        elif count >= rules.throttle_after:
            action = "throttled"
        with self.sv.db.session() as s:
            s.add(
                AuditEvent(
                    user_id=p.user_id,
                    endpoint=endpoint,
                    category=category,
                    score=score,
                    prompt_hash=prompt_hash(text),
                    action=action,
                )
            )
            if action == "suspended":
                user = s.get(User, p.user_id)
                if user is not None and user.role != "admin":
                    user.status = "suspended"

    def owned_sha(self, p: Principal, image_id: str, param: str) -> tuple[str, Image.Image]:
        with self.sv.db.session() as s:
            rec = s.get(ImageRecord, image_id)
            if rec is None or rec.user_id != p.user_id:
                raise APIError(404, f"No image with id '{image_id}'.", param=param, code="image_not_found")
            if rec.withheld_at is not None:
                raise withheld(image_id, param)
            sha = rec.sha256
        return sha, self.sv.store.open_image(sha)

    def is_own_image(self, p: Principal, data: bytes, param: str = "image") -> bool:
        """Whether the upload is one of the caller's own results, byte for byte (content-addressed storage).
        An upscale of an upload that was not is not either: it is that upload enlarged, and would let a
        member without `edit_upload` edit any picture. The bytes of a withheld image answer 410, as its
        `image_id` does, whoever uploads them (its id is not told: it may be someone else's)."""
        import hashlib

        return self.is_own_sha(p, hashlib.sha256(data).hexdigest(), param)

    def is_own_sha(self, p: Principal, sha: str, param: str = "image") -> bool:
        """is_own_image by the stored image's hash: an `image_id` names one of the caller's images, but an
        upscale of an upload among them is that upload, not a result of theirs."""
        with self.sv.db.session() as s:
            records = s.execute(
                select(ImageRecord.user_id, ImageRecord.withheld_at, Job.params)
                .outerjoin(Job, Job.id == ImageRecord.job_id)
                .where(ImageRecord.sha256 == sha)
            ).all()
        if any(withheld_at is not None for _user, withheld_at, _params in records):
            raise withheld(None, param)
        return any(user == p.user_id and not (params or {}).get(OF_UPLOAD) for user, _w, params in records)

    def check_upscale(self, model: str, sub: Submission) -> None:
        """What the model's upsamplers take, before the charge (the engine refuses the rest after it)."""
        limit = self.sv.registry.upscale_limit(model)
        if limit is None or sub.image_size is None:
            return
        if limit == 0:
            raise invalid(f"The model '{model}' has no learned upsampler: it cannot upscale.", "model")
        if max(sub.image_size) > limit:
            w, h = sub.image_size
            param = "image_id" if "image" in sub.refs else "image"
            raise invalid(
                f"Invalid input image - the model '{model}' upscales images up to {limit} px on the longest side "
                f"(4x gives {4 * limit} px), got {w}x{h}.",
                param,
                "invalid_image_size",
            )

    def cost(self, sub: Submission) -> int:
        """Credits by output size; an upscale at its own price; an outpaint by the frames it paints, each
        priced as an image of the frame's size (`size` does not apply to it)."""
        st = self.sv.settings
        if sub.kind == "upscale":
            return int(st.upscale_cost)
        if sub.kind == "outpaint":
            assert sub.image_size is not None
            sides = {k: int(sub.params.get(k) or 0) for k in ("left", "right", "top", "bottom")}
            try:
                frames = outpaint.frame_count(sub.image_size, **sides)
            except InvalidInput as exc:
                # the side to blame: a negative one, else the largest given (a canvas too large), else left
                side = min(sides, key=lambda k: (sides[k] >= 0, -sides[k]))
                raise invalid(f"Invalid outpaint: {exc}.", "image" if exc.param == "image" else side) from exc
            return frames * self._price(f"{outpaint.FRAME}x{outpaint.FRAME}")
        return sub.n * self._price(sub.size)

    def _price(self, size: str) -> int:
        costs = self.sv.settings.credit_costs
        return int(costs.get(size, max(costs.values())))

    # --- submission ------------------------------------------------------------------------------------

    def submit(self, p: Principal, sub: Submission, endpoint: str) -> str:
        """All checks, then charge and queue. Returns the job id. Runs in a worker thread (blocking I/O)."""
        st = self.sv.settings
        check_text(sub.user, "user", MAX_USER)
        check_text(sub.safety_identifier, "safety_identifier", MAX_USER)
        check_text(sub.model, "model", MAX_MODEL)
        feature = FEATURE_OF[sub.kind]
        require_feature(p, feature, st.features, WHAT[feature])
        # content-addressed storage: a result downloaded and uploaded again counts as the caller's own
        own = {k: self.is_own_image(p, data, k) for k, (data, _img) in sub.uploads.items() if k != "mask"}
        # an image_id is the caller's, but may be an upscale of someone else's picture (and an upscale of that)
        own_input = own | {k: self.is_own_sha(p, sha, k) for k, sha in sub.refs.items() if k != "mask"}
        if sub.kind in ("edit", "outpaint") and own_input.get("image") is False:
            require_feature(p, "edit_upload", st.features, WHAT["edit_upload"])
        if sub.kind == "upscale" and own_input.get("image") is False:
            sub.params[OF_UPLOAD] = True
        model = self.sv.registry.resolve(sub.model)
        if sub.kind == "upscale":
            self.check_upscale(model, sub)
        texts = [t for t in [sub.prompt, *sub.prompts] if t]
        if len(sub.prompts) > 1:  # a blend draws its prompts together: harmless one by one, not always together
            texts.append(", ".join(t for t in sub.prompts if t))
        cost = self.cost(sub)
        turn = self.throttle(p)
        try:
            job_id = self._take(p, sub, endpoint, model, own, texts, cost)
            if turn is not None:
                with self._turns_lock:
                    self._turns[job_id] = (p.user_id, turn)
            return job_id
        except BaseException as exc:
            # only a safety refusal keeps the turn; a full queue, missing credits or a check that could not
            # run (503) took nothing, and the throttled user may try again at once
            if turn is not None and not (isinstance(exc, APIError) and exc.code == "content_policy_violation"):
                self.sv.limiter.give_back(p.user_id, turn)
            raise

    def _take(self, p: Principal, sub: Submission, endpoint: str, model: str, own: dict[str, bool],
              texts: list[str], cost: int) -> str:  # fmt: skip
        st = self.sv.settings
        self.check_policy(p, texts, endpoint)  # before any compute
        if p.role not in st.features.get("real_face_upload", []):
            for param, is_own in own.items():
                if not is_own and has_real_face(sub.uploads[param][1]):
                    log.info("refused an upload with a realistic face: user %s, %s", p.user_id, endpoint)
                    raise real_face_refusal(param)

        params: dict[str, Any] = {
            "prompt": sub.prompt,
            "n": sub.n,
            "size": sub.size,
            "response_format": sub.response_format,
            "user": sub.user,
            **({"safety_identifier": sub.safety_identifier} if sub.safety_identifier else {}),
            "request_id": sub.request_id,
            **sub.params,
        }
        params.update(sub.refs)
        stored = {param: upload_to_store(data, img) for param, (data, img) in sub.uploads.items()}
        self.sv.jobs.reserve()
        try:
            with self.sv.db.session() as s:
                # charge first: it locks the user row (FOR UPDATE) before the job's foreign key takes a
                # share lock on it, so two submits of one user cannot deadlock on PostgreSQL
                job_id = new_id("job")
                credits.charge(s, p.user_id, cost, st.credit_grants, job_id)
                # uploads are stored only for a request that is taken (a refused one leaves nothing on disk),
                # and before the row that points to them
                for param, data in stored.items():
                    params[param] = self.sv.store.put(data)
                s.add(Job(id=job_id, user_id=p.user_id, kind=sub.kind, model=model, params=params, cost=cost))
        except BaseException:
            self.sv.jobs.release()
            raise
        self.sv.jobs.enqueue(job_id)
        return job_id

    # --- responses -------------------------------------------------------------------------------------

    def job(self, p: Principal, job_id: str) -> Job:
        with self.sv.db.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.user_id != p.user_id:
                raise APIError(404, f"No job with id '{job_id}'.", param="job_id", code="job_not_found")
        if job.status in TERMINAL and self._turns:
            self._settle_turn(job)
        return job

    def _settle_turn(self, job: Job) -> None:
        with self._turns_lock:
            taken = self._turns.pop(job.id, None)
        if taken is not None and ((job.error or {}).get("error") or {}).get("type") == "invalid_request_error":
            self.sv.limiter.give_back(*taken)

    def image_url(self, image_id: str, base_url: str) -> str:
        base = (self.sv.settings.public_url or base_url).rstrip("/")
        return f"{base}/v1/files/{image_id}.png?{self.sv.signer.query(image_id)}"

    def images_data(self, image_ids: list[str], fmt: str, base_url: str) -> list[dict[str, Any]]:
        """OpenAI's `data` items. An image withheld after a review keeps its place, without its content (its
        URL answers 410 image_withheld)."""
        if fmt == "url":
            return [{"url": self.image_url(i, base_url)} for i in image_ids]
        with self.sv.db.session() as s:
            records = {r.id: r for r in s.scalars(select(ImageRecord).where(ImageRecord.id.in_(image_ids)))}
        return [
            {"b64_json": None, "withheld": True}
            if records[i].withheld_at is not None
            else {"b64_json": base64.b64encode(self.sv.store.get(records[i].sha256)).decode()}
            for i in image_ids
        ]

    def images_response(self, job: Job, base_url: str) -> dict[str, Any]:
        ids = list((job.result or {}).get("images", []))
        fmt = job.params.get("response_format") or "url"
        created = int(job.finished_at or time.time())
        return {"created": created, "data": self.images_data(ids, fmt, base_url)}

    def job_json(self, job: Job, base_url: str) -> dict[str, Any]:
        h = self.sv.jobs.handle(job.id)
        step, total = (
            (h.step, h.total) if h and job.status == "running" else (job.progress_step, job.progress_total)
        )
        return {
            "id": job.id,
            "object": "job",
            "kind": job.kind,
            "model": job.model,
            "status": job.status,
            "created_at": int(job.created_at),
            "started_at": int(job.started_at) if job.started_at else None,
            "finished_at": int(job.finished_at) if job.finished_at else None,
            "cost": job.cost,
            "progress": {"step": step, "total": total},
            "result": self.images_response(job, base_url) if job.status == "succeeded" else None,
            "image_ids": list((job.result or {}).get("images", [])),
            "error": (job.error or {}).get("error"),
        }

    def image_detail(self, rec: ImageRecord, base_url: str) -> dict[str, Any]:
        """`image_json` plus what the viewer shows: the seed that reproduces the image, the request's settings
        and whether the file's provenance metadata is signed by this server."""
        from unclip.safety.provenance import read_metadata

        meta, signed = read_metadata(self.sv.store.get(rec.sha256))
        with self.sv.db.session() as s:
            job = s.get(Job, rec.job_id) if rec.job_id else None
            params = dict(job.params) if job is not None else {}
        seed = meta.get("seed", "")
        return {
            **self.image_json(rec, base_url),
            "seed": int(seed) if seed.isdigit() else None,
            # a side of 0 says nothing; guidance 0 is a setting (no guidance)
            "settings": {
                k: params[k]
                for k in VIEWER_SETTINGS
                if params.get(k) not in (None, "")
                and not (k in ("left", "right", "top", "bottom") and not params[k])
                and not (k in ("size", "n") and rec.kind in SIZED_BY_INPUT)
            },
            "provenance": {"signed": signed, "request_id": meta.get("request_id"), "created": meta.get("created")},
        }

    def image_json(self, rec: ImageRecord, base_url: str) -> dict[str, Any]:
        return {
            "id": rec.id,
            "object": "image",
            "kind": rec.kind,
            "model": rec.model,
            "prompt": rec.prompt,
            "width": rec.width,
            "height": rec.height,
            "created_at": int(rec.created_at),
            "job_id": rec.job_id,
            "url": self.image_url(rec.id, base_url),
            "withheld": rec.withheld_at is not None,
        }
