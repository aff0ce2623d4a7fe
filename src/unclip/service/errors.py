"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with OpenAI's status codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("unclip.service")


class APIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return AsciiJSONResponse(self.body(), status_code=self.status, headers=self.headers)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error that echoes what the client sent (a lone
    surrogate included, which has no UTF-8 form) can always be written."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def text_problem(value: str) -> str | None:
    """Why a client's text cannot be taken (stored, or written back), or None: NUL characters (PostgreSQL
    refuses them) and lone surrogates (no UTF-8 form)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it has a lone surrogate)"
    return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):  # multimodal inputs: {"type": "text", "text": ...}
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)


class RequestBody(BaseModel):
    """A JSON request body whose text fields are checked with `text_problem` (nested bodies check theirs)."""

    @field_validator("*", mode="before")
    @classmethod
    def _takeable_text(cls, value: Any) -> Any:
        for text in _strings(value):
            if problem := text_problem(text):
                raise ValueError(problem)
        return value


class _ErrorFields(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """OpenAI's error shape."""

    error: _ErrorFields


# What every operation may answer besides its success, for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Invalid request: the parameter is named in `param`, the reason in `code`.",
        401: "No or unknown API key.",
        403: "Waitlisted, suspended, or a role without this feature.",
        404: "No such object, model or route.",
        409: "The job was cancelled while the request waited.",
        413: "Request body too large.",
        429: "Rate limit or credits exhausted (`Retry-After`, `x-ratelimit-*`).",
        500: "Server error.",
        503: "Queue full or shutting down (`Retry-After`).",
        504: "The request timed out; its job was cancelled and refunded.",
    }.items()
}


def invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def missing(param: str) -> APIError:
    return APIError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def unknown_parameter(param: str) -> APIError:
    return APIError(400, f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


def not_found(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(404, message, param=param, code=code)


def content_policy() -> APIError:
    return APIError(
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
        "not allowed by our safety system.",
        param=None,
        code="content_policy_violation",
    )


def rate_limited(message: str, retry_after: float, type: str = "requests") -> APIError:
    seconds = max(1, int(retry_after + 0.999))
    return APIError(
        429, message, type=type, code="rate_limit_exceeded", headers={"Retry-After": str(seconds)}
    )


def _status_type(status: int) -> str:
    return {
        401: "invalid_request_error",
        403: "invalid_request_error",
        404: "invalid_request_error",
        405: "invalid_request_error",
        413: "invalid_request_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    if not errors:
        return invalid("Invalid request.", code=None)
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    loc = [p for p in loc if p not in ("str", "int", "float", "bool") and not p.startswith(("list[", "dict["))]
    param = ".".join(loc) or None
    kind = err.get("type", "")
    if kind == "missing" and param:
        return missing(param)
    if kind == "json_invalid" or ((kind.startswith("model_attributes") or kind == "missing") and not param):
        return invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON.)",
            code=None,
        )
    if kind == "extra_forbidden" and param:
        return unknown_parameter(param)
    expected = {
        "int_parsing": "an integer",
        "int_type": "an integer",
        "string_type": "a string",
        "bool_parsing": "a boolean",
        "bool_type": "a boolean",
        "float_parsing": "a number",
        "float_type": "a number",
        "list_type": "an array",
        "dict_type": "an object",
    }.get(kind)
    if expected and param:
        return invalid(
            f"Invalid type for '{param}': expected {expected}, but got a value of another type.",
            param=param,
            code="invalid_type",
        )
    reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if param is None:  # e.g. a key that is not Unicode text
        return invalid(f"Invalid request body: {reason}.", code="invalid_value")
    return invalid(f"Invalid value for '{param}': {reason}.", param=param)


def install(app: FastAPI) -> None:
    """Answer every error, including validation and unknown routes, in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            f"Invalid URL ({request.method} {request.url.path})"
            if exc.status_code == 404
            else str(exc.detail)
        )
        return APIError(
            exc.status_code, message, type=_status_type(exc.status_code), headers=dict(exc.headers or {})
        ).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Starlette raises the error again after this answer and the server then closes the connection: say
        # so, or a keep-alive client sends its next request into a reset
        # this answer is made outside the middleware (Starlette's error middleware wraps them): its headers too
        from unclip.service.middleware import BROWSER_HEADERS

        request_id = getattr(request.state, "request_id", None)
        return APIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            headers={"Connection": "close", **BROWSER_HEADERS, **({"x-request-id": request_id} if request_id else {})},
        ).response()
