"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with OpenAI's status codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
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
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


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
    param = ".".join(loc) or None
    kind = err.get("type", "")
    if kind == "missing" and param:
        return missing(param)
    if kind == "json_invalid" or (kind.startswith("model_attributes") and not param):
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
    return invalid(f"Invalid value for '{param}': {err.get('msg', 'invalid')}.", param=param)


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
        return APIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
            headers={"Connection": "close"},
        ).response()
