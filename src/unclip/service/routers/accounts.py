"""Accounts: signup (onto the waitlist; the key is shown once), the caller's own account, and the web app's
session (sign in with a key once; an HttpOnly cookie from then on)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from unclip.service import credits
from unclip.service.auth import (
    ADMIN_EMAIL,
    SESSION_COOKIE,
    SESSION_TTL_S,
    Principal,
    authenticate,
    create_key,
    create_session,
    create_user,
    resolve,
    resolve_session,
    user_json,
    valid_email,
)
from unclip.service.db import User, WebSession
from unclip.service.errors import APIError, RequestBody, invalid
from unclip.service.routers.deps import services

router = APIRouter(prefix="/v1", tags=["accounts"])


class SignupRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    name: str = Field("", max_length=200)


@router.post(
    "/signup", status_code=201, summary="Sign up: you join the waitlist and get an API key, shown once"
)
def signup(request: Request, body: SignupRequest) -> JSONResponse:
    sv = services(request)
    if not sv.settings.signup_open:
        raise APIError(403, "Signups are closed on this server.", code="signup_closed")
    try:
        email = valid_email(body.email)
    except ValueError:
        raise invalid("Invalid 'email': expected an address like name@example.com.", "email") from None
    if email == ADMIN_EMAIL:  # reserved for the server's own admin (UNCLIP_ADMIN_KEY)
        raise APIError(409, "An account with this email already exists.", param="email", code="email_taken")
    wait = sv.limiter.hit("signup:" + (request.client.host if request.client else "?"), 10)
    if wait is not None:
        from unclip.service.errors import rate_limited

        raise rate_limited("Too many signups from this address.", wait)
    try:
        with sv.db.session() as s:
            user = create_user(s, email, name=body.name, role="waitlisted")
            _, key = create_key(s, user, name="signup")
            out = {"user": user_json(user), "api_key": key}
    except (ValueError, IntegrityError):  # IntegrityError: the same email signing up at the same moment
        raise APIError(
            409, "An account with this email already exists.", param="email", code="email_taken"
        ) from None
    return JSONResponse(out, status_code=201)


@router.get("/me", summary="Your account: role, status and credits")
def me(request: Request, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    sv = services(request)
    with sv.db.session() as s:
        user = s.get(User, p.user_id)
        assert user is not None
        credits.ensure_grant(s, user, sv.settings.credit_grants)
        out = user_json(user)
    out["features"] = sorted(f for f, roles in sv.settings.features.items() if p.role in roles)
    out["rate_limit_per_minute"] = sv.settings.rate_limits.get(p.role, 0)
    out["credit_costs"] = dict(sv.settings.credit_costs)
    return out


class SessionRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=200)


def _session_json(user: User, csrf: str, expires_at: float) -> dict[str, Any]:
    return {"object": "session", "user": user_json(user), "csrf_token": csrf, "expires_at": int(expires_at)}


@router.post("/session", summary="Sign the web app in: an API key in, an HttpOnly session cookie out")
def sign_in(request: Request, response: Response, body: SessionRequest) -> dict[str, Any]:
    """The browser sends the key once and keeps only the cookie (HttpOnly, SameSite=Strict; Secure over HTTPS)
    and the CSRF token this returns, which every request that changes anything sends in `X-CSRF-Token`."""
    sv = services(request)
    wait = sv.limiter.hit("session:" + (request.client.host if request.client else "?"), 30)
    if wait is not None:
        from unclip.service.errors import rate_limited

        raise rate_limited("Too many sign-in attempts from this address.", wait)
    with sv.db.session() as s:
        found = resolve(s, body.api_key.strip())
        if found is None:
            raise APIError(401, "Incorrect API key provided.", param="api_key", code="invalid_api_key")
        user, key = found
        record, token = create_session(s, user, key)
        out = _session_json(user, record.csrf, record.expires_at)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure_cookie(request, sv.settings.public_url),
    )
    return out


def _secure_cookie(request: Request, public_url: str | None) -> bool:
    """Secure when the browser is on HTTPS. Its Origin says which scheme it is on: a Secure cookie sent to a
    page on plain HTTP (the server opened by its LAN address while public_url is the HTTPS name) is dropped,
    and sign-in would seem to work and not stick. Without an Origin: behind a TLS proxy that is not on this
    host the request arrives as http, so public_url decides."""
    origin = request.headers.get("origin", "").strip().lower()
    if origin.startswith(("https://", "http://")):
        return origin.startswith("https://")
    return request.url.scheme == "https" or (public_url or "").startswith("https://")


@router.get("/session", summary="The web app's session: who is signed in, and the CSRF token")
def current_session(request: Request) -> dict[str, Any]:
    sv = services(request)
    with sv.db.session() as s:
        token = request.cookies.get(SESSION_COOKIE)
        found = resolve_session(s, token) if token else None
        if found is None:
            raise APIError(401, "Not signed in.", code="not_signed_in")
        user, _, record = found
        return _session_json(user, record.csrf, record.expires_at)


@router.delete("/session", summary="Sign the web app out: the session ends and its cookie is cleared")
def sign_out(request: Request, response: Response, p: Principal = Depends(authenticate)) -> dict[str, Any]:
    cookie = request.cookies.get(SESSION_COOKIE)
    with services(request).db.session() as s:
        session = s.get(WebSession, p.session_id) if p.session_id is not None else None
        if session is None and cookie:  # authenticated by a key, with the cookie beside it: end that too
            found = resolve_session(s, cookie)
            session = found[2] if found is not None and found[0].id == p.user_id else None
        if session is not None:
            s.delete(session)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return {"object": "session", "deleted": True}
