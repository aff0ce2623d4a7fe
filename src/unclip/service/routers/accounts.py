"""Accounts: signup (onto the waitlist; the key is shown once) and the caller's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from unclip.service import credits
from unclip.service.auth import Principal, authenticate, create_key, create_user, user_json
from unclip.service.db import User
from unclip.service.errors import APIError, invalid
from unclip.service.routers.deps import services

router = APIRouter(prefix="/v1", tags=["accounts"])


class SignupRequest(BaseModel):
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
    if "@" not in body.email or len(body.email.strip()) < 3:
        raise invalid("Invalid 'email'.", "email")
    wait = sv.limiter.hit("signup:" + (request.client.host if request.client else "?"), 10)
    if wait is not None:
        from unclip.service.errors import rate_limited

        raise rate_limited("Too many signups from this address.", wait)
    with sv.db.session() as s:
        try:
            user = create_user(s, body.email, name=body.name, role="waitlisted")
        except ValueError:
            raise APIError(
                409, "An account with this email already exists.", param="email", code="email_taken"
            ) from None
        _, key = create_key(s, user, name="signup")
        out = {"user": user_json(user), "api_key": key}
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
