"""Images: the OpenAI endpoints (generations, edits, variations) and ours (outpaints, blends, upscales,
history, signed file URLs)."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, StrictFloat, StrictInt
from sqlalchemy import select
from starlette.datastructures import UploadFile

from unclip.engine import InvalidInput
from unclip.engine.components import UPSCALE_INPUT
from unclip.engine.engine import check_negative_prompt
from unclip.engine.masks import REPAINT_ALPHA, has_area_to_edit
from unclip.service import reviews
from unclip.service.auth import Principal, authenticate
from unclip.service.db import ImageRecord
from unclip.service.errors import APIError, RequestBody, invalid, missing, text_problem, unknown_parameter
from unclip.service.forms import NotText, read_form
from unclip.service.images import (
    FORMATS,
    SIZES,
    Submission,
    check_choice,
    check_n,
    check_prompt,
    check_unsupported,
    withheld,
)
from unclip.service.paging import newest_first
from unclip.service.policy import read_image, read_mask, verify_image
from unclip.service.routers.deps import admitted, base_url, respond, services

router = APIRouter(prefix="/v1", tags=["images"])

# Parameters of the contract (or of the official client) that only GPT image / dall-e-3 models take:
# accepted at their default or null, answered 400 otherwise, as for dall-e-2.
OTHER_MODEL_PARAMS: dict[str, tuple[Any, ...]] = {
    "quality": ("standard", "auto"),
    "style": (),
    "output_format": ("png",),
    "output_compression": (100, "100"),
    "stream": (False, "false"),
    "partial_images": (0, "0"),
    "moderation": ("auto",),
    "background": ("auto",),
    "input_fidelity": (),
    "complexity": (),
    "frame_count": (),
    "frame_duration_ms": (),
    "svg": (),
    "markup": (),
}
EXTENSIONS = ("seed", "steps", "guidance", "negative_prompt")  # unclip's own, e.g. via extra_body
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_DIGITS = 18
ENGINE_OPTIONS = ("seed", "steps", "guidance")  # the extensions edits, variations and outpaints take
COMMON = ("model", "n", "size", "response_format", "user", "safety_identifier")
MAX_CACHE_S = 600  # how long a browser may keep an image fetched by signed URL
MAX_UPSCALE_INPUT = max(UPSCALE_INPUT.values())  # the largest a learned stage takes (a model may take less)


class GenerationRequest(RequestBody):
    """`CreateImageRequest` for dall-e-2, plus unclip's `seed`, `steps`, `guidance`, `negative_prompt`."""

    model_config = ConfigDict(extra="allow")
    prompt: str = Field(
        description="At most 1000 characters.", json_schema_extra={"minLength": 1, "maxLength": 1000}
    )
    model: str | None = Field(
        None, description="`dall-e-2` (the default model) or an installed model's name."
    )
    n: StrictInt | None = Field(1, description="1 to 10.", json_schema_extra={"minimum": 1, "maximum": 10})
    size: str | None = Field("1024x1024", description="256x256, 512x512 or 1024x1024.")
    response_format: str | None = Field("url", description="url (signed, valid 60 minutes) or b64_json.")
    user: str | None = None
    safety_identifier: str | None = None
    seed: StrictInt | None = None
    steps: StrictInt | None = None
    guidance: StrictFloat | None = None
    negative_prompt: str | None = None


def text_int(value: str, name: str) -> int:
    """A form field's integer, in plain digits (int() also takes "1_0" and other scripts' digits)."""
    if not _INTEGER.fullmatch(value.strip()):
        raise invalid(
            f"Invalid type for '{name}': expected an integer, but got a string instead.", name, "invalid_type"
        )
    digits = value.strip().lstrip("+-").lstrip("0")
    if len(digits) > _MAX_DIGITS:  # int() refuses over 4,300 digits; no parameter needs more than a few
        below = value.strip().startswith("-")
        raise invalid(
            f"Invalid '{name}': integer {'below minimum' if below else 'above maximum'} value "
            f"(it has {len(digits)} digits).",
            name,
            "integer_below_min_value" if below else "integer_above_max_value",
        )
    return int(value)


def _extensions(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in EXTENSIONS:
        value = values.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, str) and name not in ("negative_prompt", "guidance"):
            value = text_int(value, name)
        elif isinstance(value, str) and name == "guidance" and not _NUMBER.fullmatch(value.strip()):
            raise invalid(f"Invalid type for '{name}': expected a number in plain digits.", name, "invalid_type")
        try:
            out[name] = (
                str(value)
                if name == "negative_prompt"
                else (float(value) if name == "guidance" else int(value))
            )
        except (TypeError, ValueError):
            raise invalid(f"Invalid type for '{name}'.", name, "invalid_type") from None
        if name in RANGES:
            check_range(out[name], name, *RANGES[name])
    if "negative_prompt" in out:
        check_prompt(out["negative_prompt"], required=False, param="negative_prompt")
        try:  # the model's default guidance is checked by the engine (after the charge: refunded)
            check_negative_prompt(out["negative_prompt"], out.get("guidance"))
        except InvalidInput as exc:
            raise invalid(f"Invalid 'negative_prompt': {exc.message}.", "negative_prompt") from None
    return out


# What the engine accepts, checked here before the charge and without taking a place in the queue.
RANGES: dict[str, tuple[float, float]] = {"seed": (0, 2**63 - 1), "steps": (1, 200), "guidance": (0.0, 30.0)}


def check_range(value: float, name: str, low: float, high: float) -> None:
    kind = "integer" if isinstance(value, int) else "number"
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"Invalid '{name}': expected a finite number, but got {value}.", name, "invalid_value")
    if value < low:
        raise invalid(
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low}, but got {value} instead.",
            name,
            f"{kind}_below_min_value",
        )
    if value > high:
        raise invalid(
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high}, but got {value} instead.",
            name,
            f"{kind}_above_max_value",
        )


async def _submit(request: Request, p: Principal, sub: Submission, endpoint: str) -> str:
    """Checks, charge and queue (in a worker thread); the job keeps the request id for provenance."""
    sub.request_id = getattr(request.state, "request_id", None)
    return await run_in_threadpool(services(request).images.submit, p, sub, endpoint)


@router.post("/images/generations", summary="Create image (OpenAI createImage, dall-e-2)")
async def generations(
    request: Request, body: GenerationRequest, p: Principal = Depends(admitted)
) -> JSONResponse:
    for name in body.model_extra or {}:
        if name not in OTHER_MODEL_PARAMS:
            raise unknown_parameter(name)
    check_unsupported(body.model_extra or {}, OTHER_MODEL_PARAMS)
    values = body.model_dump()
    sub = Submission(
        kind="generation",
        model=body.model,
        prompt=check_prompt(body.prompt),
        n=check_n(body.n),
        size=check_choice(body.size, "size", SIZES, "1024x1024"),
        response_format=check_choice(body.response_format, "response_format", FORMATS, "url"),
        params=_extensions(values),
        user=body.user,
        safety_identifier=body.safety_identifier,
    )
    job_id = await _submit(request, p, sub, "images.generations")
    return await respond(request, p, job_id)


# --- multipart endpoints --------------------------------------------------------------------------------


def _multipart_schema(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                }
            },
        }
    }


_FILE = {"type": "string", "format": "binary"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_COMMON_FIELDS = {
    "model": _STR,
    "n": _INT,
    "size": {"type": "string", "enum": list(SIZES)},
    "response_format": {"type": "string", "enum": list(FORMATS)},
    "user": _STR,
    "seed": _INT,
    "steps": _INT,
    "guidance": {"type": "number"},
}


class Form:
    """A parsed multipart form: text fields and files, with OpenAI's checks."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.fields: dict[str, Any] = {}
        for key, value in items:
            name = key[:-2] if key.endswith("[]") else key
            base, _, sub = name.partition("[")
            if sub.endswith("]") and base in OTHER_MODEL_PARAMS:  # the client's form of an object: `svg[model]`
                if not isinstance(self.fields.setdefault(base, {}), dict):  # `svg=…` and then `svg[model]=…`
                    raise invalid(f"'{base}' was given more than once.", base, "duplicate_parameter")
                self.fields[base][sub[:-1]] = value
                continue
            if name in self.fields and name == "image":
                raise invalid("Only one image can be given for the dall-e-2 model.", "image", "duplicate_parameter")
            if name in self.fields:  # which one was meant? (it used to be the last)
                raise invalid(f"'{name}' was given more than once.", name, "duplicate_parameter")
            self.fields[name] = value

    def check_names(self, allowed: tuple[str, ...]) -> None:
        for name in self.fields:
            if name not in allowed and name not in OTHER_MODEL_PARAMS:
                raise unknown_parameter(name)
        check_unsupported(
            {k: v for k, v in self.fields.items() if k in OTHER_MODEL_PARAMS}, OTHER_MODEL_PARAMS
        )

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if isinstance(value, _File):
            raise invalid(
                f"Invalid type for '{name}': expected a string, but got a file.", name, "invalid_type"
            )
        if isinstance(value, NotText):
            raise invalid(f"Invalid '{name}': must be text in {value.charset}.", name)
        text = str(value)
        if problem := text_problem(text):
            raise invalid(f"Invalid '{name}': {problem}.", name)
        return text

    def int(self, name: str) -> int | None:
        value = self.text(name)
        return None if value is None or value == "" else text_int(value, name)

    async def file(self, name: str, required: bool = True) -> bytes | None:
        value = self.fields.get(name)
        if value is None:
            if required:
                raise missing(name)
            return None
        if not isinstance(value, _File):
            raise invalid(
                f"Invalid type for '{name}': expected a file, but got a string instead.", name, "invalid_type"
            )
        return value.data


async def _form(request: Request) -> Form:
    ctype = request.headers.get("content-type", "").lower()  # media types are case-insensitive
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise invalid("This endpoint takes multipart/form-data.", None, "invalid_content_type")
    form = await read_form(request, max_part_size=4 * 1024 * 1024)
    try:
        parsed = Form(list(form.multi_items()))
        # read the files now: the form is closed when this block ends
        for name, value in list(parsed.fields.items()):
            if isinstance(value, UploadFile):
                parsed.fields[name] = _File(await value.read())
    finally:
        await form.close()
    return parsed


@dataclass
class _File:
    data: bytes


def _common(form: Form) -> dict[str, Any]:
    return {
        "model": form.text("model") or None,
        "n": check_n(form.int("n")),
        "size": check_choice(form.text("size") or None, "size", SIZES, "1024x1024"),
        "response_format": check_choice(
            form.text("response_format") or None, "response_format", FORMATS, "url"
        ),
        "user": form.text("user"),
        "safety_identifier": form.text("safety_identifier"),
        "params": _extensions({k: form.text(k) for k in EXTENSIONS}),
    }


async def _image_or_ref(request: Request, p: Principal, form: Form, sub: Submission) -> Any:
    """`image` (upload) or `image_id` (one of the caller's images) → the PIL image."""
    image_id = form.text("image_id")
    if image_id and "image" in form.fields:
        raise invalid("Give 'image' or 'image_id', not both.", "image_id")
    if image_id:
        sha, img = await run_in_threadpool(services(request).images.owned_sha, p, image_id, "image_id")
        sub.refs["image"] = sha
    else:
        data = await form.file("image")
        assert data is not None
        img = await run_in_threadpool(read_image, data, "image", False)  # outpaints, upscales: any shape
        sub.uploads["image"] = (data, img)
    sub.image_size = img.size
    return img


@router.post(
    "/images/edits",
    summary="Create image edit (OpenAI createImageEdit, dall-e-2)",
    openapi_extra=_multipart_schema(
        {"image": _FILE, "mask": _FILE, "prompt": _STR, **_COMMON_FIELDS}, ["image", "prompt"]
    ),
)
async def edits(request: Request, p: Principal = Depends(admitted)) -> JSONResponse:
    form = await _form(request)
    form.check_names(("image", "mask", "prompt", *COMMON, *ENGINE_OPTIONS))
    data = await form.file("image")
    prompt = check_prompt(form.text("prompt"))
    c = _common(form)
    assert data is not None
    img = await run_in_threadpool(read_image, data, "image")
    sub = Submission(
        kind="edit",
        prompt=prompt,
        model=c["model"],
        n=c["n"],
        size=c["size"],
        response_format=c["response_format"],
        params=c["params"],
        user=c["user"],
        safety_identifier=c["safety_identifier"],
    )
    sub.uploads["image"] = (data, img)
    mask = await form.file("mask", required=False)
    if mask is not None:
        sub.uploads["mask"] = (mask, await run_in_threadpool(read_mask, mask, img.size, "mask"))
    elif img.mode != "RGBA":  # what read_image gives for every upload with transparency
        raise invalid(
            "Invalid input image - it has no alpha channel and no mask was given: send an RGBA or LA image "
            "whose transparent areas mark where to edit, or a 'mask'.",
            "image",
            "invalid_image_format",
        )
    elif not has_area_to_edit(img):
        raise invalid(
            f"Invalid input image - it has no transparent pixels (alpha below {REPAINT_ALPHA}) and no mask was "
            "given: make the areas to edit transparent, or send a 'mask'.",
            "image",
            "invalid_image_format",
        )
    job_id = await _submit(request, p, sub, "images.edits")
    return await respond(request, p, job_id)


@router.post(
    "/images/variations",
    summary="Create image variation (OpenAI createImageVariation)",
    openapi_extra=_multipart_schema({"image": _FILE, **_COMMON_FIELDS}, ["image"]),
)
async def variations(request: Request, p: Principal = Depends(admitted)) -> JSONResponse:
    form = await _form(request)
    form.check_names(("image", *COMMON, *ENGINE_OPTIONS))
    data = await form.file("image")
    c = _common(form)
    assert data is not None
    img = await run_in_threadpool(read_image, data, "image")
    sub = Submission(
        kind="variation",
        prompt=None,
        model=c["model"],
        n=c["n"],
        size=c["size"],
        response_format=c["response_format"],
        params=c["params"],
        user=c["user"],
        safety_identifier=c["safety_identifier"],
    )
    sub.uploads["image"] = (data, img)
    job_id = await _submit(request, p, sub, "images.variations")
    return await respond(request, p, job_id)


@router.post(
    "/images/outpaints",
    summary="Outpaint: extend an image beyond its borders (unclip)",
    openapi_extra=_multipart_schema(
        {
            "image": _FILE,
            "image_id": _STR,
            "prompt": _STR,
            "left": _INT,
            "right": _INT,
            "top": _INT,
            "bottom": _INT,
            **_COMMON_FIELDS,
        },
        ["prompt"],
    ),
)
async def outpaints(request: Request, p: Principal = Depends(admitted)) -> JSONResponse:
    form = await _form(request)
    form.check_names(
        ("image", "image_id", "prompt", "left", "right", "top", "bottom", *COMMON, *ENGINE_OPTIONS)
    )
    prompt = check_prompt(form.text("prompt"))
    c = _common(form)
    sides = {k: form.int(k) or 0 for k in ("left", "right", "top", "bottom")}
    for k, v in sides.items():
        if not 0 <= v <= 1024:
            raise invalid(f"Invalid '{k}': expected 0 to 1024 pixels.", k)
    if not any(sides.values()):
        raise invalid("Give at least one of 'left', 'right', 'top', 'bottom' in pixels.", "left")
    if c["n"] != 1:
        raise invalid(f"Invalid 'n': an outpaint makes one image, got {c['n']}.", "n")
    sub = Submission(
        kind="outpaint",
        prompt=prompt,
        model=c["model"],
        n=1,
        size=c["size"],
        response_format=c["response_format"],
        params={**c["params"], **sides},
        user=c["user"],
        safety_identifier=c["safety_identifier"],
    )
    await _image_or_ref(request, p, form, sub)
    job_id = await _submit(request, p, sub, "images.outpaints")
    return await respond(request, p, job_id)


@router.post(
    "/images/upscales",
    summary="Upscale an image 4x (unclip)",
    openapi_extra=_multipart_schema(
        {
            "image": _FILE,
            "image_id": _STR,
            "model": _STR,
            "response_format": {"type": "string", "enum": list(FORMATS)},
            "user": _STR,
            "safety_identifier": _STR,
        },
        [],
    ),
)
async def upscales(request: Request, p: Principal = Depends(admitted)) -> JSONResponse:
    form = await _form(request)
    form.check_names(("image", "image_id", "model", "response_format", "user", "safety_identifier"))
    fmt = check_choice(form.text("response_format") or None, "response_format", FORMATS, "url")
    sub = Submission(
        kind="upscale",
        prompt=None,
        model=form.text("model"),
        n=1,
        size="1024x1024",
        response_format=fmt,
        user=form.text("user"),
        safety_identifier=form.text("safety_identifier"),
    )
    img = await _image_or_ref(request, p, form, sub)
    if max(img.size) > MAX_UPSCALE_INPUT:  # what the learned stages take; checked before the charge
        raise invalid(
            f"Invalid input image - upscaling takes images up to {MAX_UPSCALE_INPUT} px on the longest side "
            f"(4x gives {4 * MAX_UPSCALE_INPUT} px), got {img.width}x{img.height}.",
            "image_id" if "image" in sub.refs else "image",
            "invalid_image_size",
        )
    job_id = await _submit(request, p, sub, "images.upscales")
    return await respond(request, p, job_id)


class BlendItem(RequestBody):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    image_id: str | None = None
    weight: StrictFloat = 1.0


class BlendRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    items: list[BlendItem] = Field(description="2 to 4 prompts and/or your own image ids, with weights.")
    model: str | None = None
    n: StrictInt | None = 1
    size: str | None = "1024x1024"
    response_format: str | None = "url"
    seed: StrictInt | None = None
    steps: StrictInt | None = None
    guidance: StrictFloat | None = None
    user: str | None = None
    safety_identifier: str | None = None


@router.post("/images/blends", summary="Blend prompts and images in CLIP space (unclip)")
async def blends(request: Request, body: BlendRequest, p: Principal = Depends(admitted)) -> JSONResponse:
    if not 2 <= len(body.items) <= 4:
        raise invalid("Give 2 to 4 items to blend.", "items")
    sv = services(request)
    sub = Submission(
        kind="blend",
        prompt=None,
        model=body.model,
        n=check_n(body.n),
        size=check_choice(body.size, "size", SIZES, "1024x1024"),
        response_format=check_choice(body.response_format, "response_format", FORMATS, "url"),
        params=_extensions(body.model_dump()),
        user=body.user,
        safety_identifier=body.safety_identifier,
    )
    items = []
    for i, item in enumerate(body.items):
        check_range(item.weight, f"items.{i}.weight", 0.0, 100.0)
        if (item.prompt is None) == (item.image_id is None):
            raise invalid("Each item takes exactly one of 'prompt' or 'image_id'.", f"items.{i}")
        if item.prompt is not None:
            sub.prompts.append(check_prompt(item.prompt, param=f"items.{i}.prompt") or "")
            items.append({"prompt": item.prompt, "weight": item.weight})
        else:
            param = f"items.{i}.image_id"
            sha, img = await run_in_threadpool(sv.images.owned_sha, p, item.image_id, param)
            if img.width != img.height:  # an outpaint's canvas, say: the image encoder takes squares
                raise invalid(f"Invalid '{param}': blends take square images, got {img.width}x{img.height}.", param)
            items.append({"image": sha, "weight": item.weight})
    if not sum(item.weight for item in body.items) > 0:
        raise invalid("Blend weights must not all be zero.", "items")
    sub.params["items"] = items
    job_id = await _submit(request, p, sub, "images.blends")
    return await respond(request, p, job_id)


@router.post(
    "/images/verify",
    summary="Did this server make an image? Signed provenance metadata and the invisible watermark (unclip)",
    openapi_extra=_multipart_schema({"image": _FILE}, ["image"]),
)
async def verify(request: Request, p: Principal = Depends(admitted)) -> dict[str, Any]:
    """`{from_unclip, metadata, metadata_valid, watermark, watermark_found_by, request_id_matches, …}` for a
    PNG, JPEG or WebP image (a re-encoded copy loses the metadata but usually keeps the watermark)."""
    form = await _form(request)
    form.check_names(("image",))
    data = await form.file("image")
    assert data is not None
    result = await run_in_threadpool(verify_image, data, "image")
    return result.to_dict()


# --- history and files ----------------------------------------------------------------------------------


@router.get("/images", summary="Your image history, newest first (unclip)")
def history(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = None,
    p: Principal = Depends(authenticate),
) -> dict[str, Any]:
    sv = services(request)
    with sv.db.session() as s:
        q = select(ImageRecord).where(ImageRecord.user_id == p.user_id, ImageRecord.withheld_at.is_(None))
        rows, more = newest_first(s, q, ImageRecord, p.user_id, after, limit)
    data = [sv.images.image_json(r, base_url(request)) for r in rows]
    return {"object": "list", "data": data, "has_more": more, "last_id": data[-1]["id"] if data else None}


def _own_image(request: Request, p: Principal, image_id: str) -> ImageRecord:
    with services(request).db.session() as s:
        rec = s.get(ImageRecord, image_id)
    if rec is None or rec.user_id != p.user_id:
        raise APIError(404, f"No image with id '{image_id}'.", param="image_id", code="image_not_found")
    return rec


@router.get(
    "/images/{image_id}", summary="One of your images, with its seed, settings and provenance (unclip)"
)
@router.head("/images/{image_id}", include_in_schema=False)  # as GET, without the body (proxies, link checkers)
def get_image(request: Request, image_id: str, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    return services(request).images.image_detail(_own_image(request, p, image_id), base_url(request))


class Report(RequestBody):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


@router.post(
    "/images/{image_id}/report",
    status_code=201,
    summary="Report one of your images to the administrators' review queue (unclip)",
)
def report(
    request: Request, image_id: str, body: Report | None = None, p: Principal = Depends(authenticate)
) -> JSONResponse:
    with services(request).db.session() as s:
        item, new = reviews.report_image(s, p.user_id, image_id, (body or Report()).reason)
        return JSONResponse(reviews.report_json(item, s.get(ImageRecord, image_id)), 201 if new else 200)


@router.get(
    "/images/{image_id}/content", summary="The PNG of one of your images (unclip)", response_class=Response
)
@router.head("/images/{image_id}/content", include_in_schema=False)
def image_content(request: Request, image_id: str, p: Principal = Depends(authenticate)) -> Response:
    rec = _own_image(request, p, image_id)
    if rec.withheld_at is not None:
        raise withheld(image_id)
    return Response(services(request).store.get(rec.sha256), media_type="image/png")


@router.get(
    "/files/{image_id}.png",
    summary="An image by signed URL (expires after 60 minutes)",
    response_class=Response,
)
@router.head("/files/{image_id}.png", include_in_schema=False)  # link checkers and proxies ask with HEAD
def signed_file(request: Request, image_id: str, expires: int = 0, sig: str = "") -> Response:
    sv = services(request)
    if not sv.signer.verify(image_id, expires, sig):
        raise APIError(403, "This URL has expired or its signature is not valid.", code="url_expired")
    with sv.db.session() as s:
        rec = s.get(ImageRecord, image_id)
    if rec is None:
        raise APIError(404, "No such image.")
    if rec.withheld_at is not None:
        raise withheld(image_id)
    # cached no longer than the URL is valid, and at most MAX_CACHE_S: an image withheld after a review stops
    # showing from browsers' caches within that
    age = max(0, min(expires - int(time.time()), MAX_CACHE_S))
    return Response(
        sv.store.get(rec.sha256), media_type="image/png", headers={"Cache-Control": f"private, max-age={age}"}
    )
