"""Pure ASGI middleware (Starlette's BaseHTTPMiddleware breaks `request.is_disconnected()`, which the
waiting requests poll to cancel the jobs of clients that went away): request ids, the body limit enforced
on the bytes that arrive (a chunked body has no Content-Length to check), and security headers."""

from __future__ import annotations

import json
import secrets
from typing import Any

Scope = dict[str, Any]


class BodyTooLarge(Exception):
    pass


def _error(status: int, message: str, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An OpenAI-shaped error as ASGI messages, with the connection closed (the body is not read)."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _too_large(limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return _error(413, f"Request body too large: the limit is {limit} bytes.", "request_too_large")


class NoNulInUrl:
    """ASGI middleware: a NUL character in the URL's path or query (`%00`) is answered 400 before any route
    reads it (an id or cursor with one made PostgreSQL raise, a 500)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and ("\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")):
            for message in _error(400, "The URL must not contain NUL characters (%00).", "invalid_url"):
                await send(message)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: answer 413 as soon as a body's declared or received size passes `max_bytes`, and stop
    the request there (nothing it sent is stored, no form is parsed further)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            for message in _too_large(self.max_bytes):
                await send(message)
            return
        state = {"received": 0, "started": False, "refused": False}

        async def limited_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    if not state["started"] and not state["refused"]:
                        state["refused"] = True
                        for m in _too_large(self.max_bytes):
                            await send(m)
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["refused"]:
                return  # the app's own answer to the aborted read (FastAPI makes it a 400) is dropped
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not state["refused"]:
                raise


class RequestId:
    """An x-request-id on every answer, as OpenAI's; `request.state.request_id` for the routes (image jobs
    keep it and it goes into each output's provenance metadata). Headers a route leaves in
    `request.state.response_headers` (the rate limit's) are added to its answer, an error's included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{secrets.token_hex(16)}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in (state.get("response_headers") or {}).items()]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *extra,
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


# on every answer, a 500's included (it is made outside the middleware: unclip.service.errors adds them)
BROWSER_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "same-origin"}


class SecurityHeaders:
    """Headers for a browser: no framing (clickjacking of the signed-in app: a SameSite cookie still goes to a
    frame on a sibling origin), no MIME sniffing, no referrer beyond this origin (signed URLs carry their
    signature), and a content security policy for the web app, which has no inline script or style.
    `/docs` (Swagger UI's page has an inline script) gets the framing rule alone. Answers of the session and
    admin endpoints are not cached. `image_origin`: where image URLs point when `UNCLIP_PUBLIC_URL` names
    another origin."""

    def __init__(self, app: Any, image_origin: str | None = None) -> None:
        self.app = app
        extra = f" {image_origin}" if image_origin else ""
        policy = (
            f"default-src 'self'; img-src 'self' blob: data:{extra}; connect-src 'self'{extra}; "
            "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'"
        )
        self.common = [(k.encode(), v.encode()) for k, v in BROWSER_HEADERS.items()]
        self.app_policy = (b"content-security-policy", policy.encode())
        self.docs_policy = (b"content-security-policy", b"frame-ancestors 'none'")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        added = [*self.common, self.docs_policy if path.startswith("/docs") else self.app_policy]
        if path.startswith(("/v1/session", "/v1/admin")):
            added.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in added if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
