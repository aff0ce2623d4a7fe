"""Users, roles, API keys and browser sessions. Keys are shown once and stored as SHA-256 digests.

Two credentials: `Authorization: Bearer <key>` (the API's, what the OpenAI clients send) and, for the web app,
an HttpOnly, SameSite=Strict session cookie made from a key once (`POST /v1/session`), so that the browser never
keeps the key. A request authenticated by the cookie that changes anything must also carry the session's CSRF
token in `X-CSRF-Token`."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from unclip.service.db import ApiKey, User, WebSession, now
from unclip.service.errors import APIError
from unclip.service.settings import ROLES, STATUSES

KEY_PREFIX = "sk-unclip-"
ADMIN_EMAIL = "admin@localhost"  # the account `unclip serve` makes on first start and UNCLIP_ADMIN_KEY's
ADMIN_KEY_NAME = "UNCLIP_ADMIN_KEY"
SESSION_COOKIE = "unclip_session"
SESSION_TTL_S = 7 * 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: str
    status: str
    key_id: str
    session_id: str | None = None  # set when the web app's session cookie authenticated the request


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_text() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def normalize_email(email: str) -> str:
    """One spelling per address: Unicode compatibility form (NFKC: composed accents, ASCII for fullwidth
    letters), invisible format characters (zero-width spaces, joiners) removed, trimmed, lower case."""
    email = unicodedata.normalize("NFKC", email)
    return "".join(c for c in email if unicodedata.category(c) != "Cf").strip().lower()


def valid_email(email: str) -> str:
    """The address as stored (`normalize_email`), or ValueError: one @ between a local part and a domain."""
    email = normalize_email(email)
    local, at, domain = email.partition("@")
    if not (at and local and domain) or "@" in domain or len(email) > 320 or any(c.isspace() for c in email):
        raise ValueError(f"not an email address: {email!r}")
    return email


def create_user(s: Session, email: str, *, name: str = "", role: str = "waitlisted") -> User:
    email = valid_email(email)
    if s.scalar(select(User).where(User.email == email)) is not None:
        raise ValueError(f"a user with email {email!r} already exists")
    user = User(
        email=email, name=name, role=check_role(role), approved_at=None if role == "waitlisted" else now()
    )
    s.add(user)
    s.flush()
    return user


def create_key(s: Session, user: User, *, name: str = "", key: str | None = None) -> tuple[ApiKey, str]:
    """Create an API key; the returned text is the only time the key is visible."""
    text = key or new_key_text()
    record = ApiKey(user_id=user.id, name=name, prefix=text[:14], hash=hash_key(text))
    s.add(record)
    s.flush()
    return record, text


def find_user(s: Session, ref: str) -> User | None:
    """A user by id or email."""
    found = s.get(User, ref) or s.scalar(select(User).where(User.email == normalize_email(ref)))
    # accounts made before emails were normalised keep the spelling they were made with
    return found or s.scalar(select(User).where(User.email == ref.strip().lower()))


class NotWaitlisted(ValueError):
    """Approval asked for someone already approved: a stale page or a second click (a role change is not an
    approval, and would demote an admin or a trusted user)."""


def approve(s: Session, user: User, role: str = "member", *, keep_admin: bool) -> User:
    if user.role != "waitlisted":
        raise NotWaitlisted(f"{user.email} is not on the waitlist (role: {user.role})")
    if check_role(role) == "waitlisted":
        raise ValueError("approve to a role other than waitlisted")
    # of two approvals at once (two admins, a stale page), only the one whose write still finds the user
    # waitlisted passes: the other must not overwrite the role (and grant) the first set
    claimed = s.execute(
        update(User)
        .where(User.id == user.id, User.role == "waitlisted")
        .values(role=role)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        now_role = s.scalar(select(User.role).where(User.id == user.id))
        raise NotWaitlisted(f"{user.email} is not on the waitlist (role: {now_role})")
    set_access(s, user, role=role, keep_admin=keep_admin)
    user.approved_at = now()
    return user


def set_access(
    s: Session, user: User, *, role: str | None = None, status: str | None = None, keep_admin: bool = True
) -> None:
    """Change a user's role or status (a role other than waitlisted counts as approval).

    With `keep_admin`, a change that leaves the server without an active admin is a 409 `last_admin`: no one
    could undo it over the API. Two admins demoting each other at once must not both pass, so the count is
    read after this change is written: PostgreSQL first locks the active admins' rows (the second demotion
    waits, then counts without the first's admin), and SQLite, which ignores FOR UPDATE, serialises the
    writes (the count runs inside the transaction that holds the write lock)."""
    new_role = check_role(role) if role is not None else user.role
    new_status = status if status is not None else user.status
    if new_status not in STATUSES:
        raise ValueError(f"unknown status {new_status!r}; expected one of {', '.join(STATUSES)}")
    active_admin = (User.role == "admin", User.status == "active")
    guard = keep_admin and user.role == "admin" and user.status == "active"
    guard = guard and not (new_role == "admin" and new_status == "active")
    if guard:
        s.scalars(select(User.id).where(*active_admin).order_by(User.id).with_for_update()).all()
    user.role, user.status = new_role, new_status
    if new_role != "waitlisted" and user.approved_at is None:
        user.approved_at = now()
    if guard:
        s.flush()
        if not s.scalar(select(func.count()).select_from(User).where(*active_admin)):
            raise APIError(
                409,
                "This is the only active admin: promote another user to admin first.",
                param="role" if new_role != "admin" else "status",
                code="last_admin",
            )


def resolve(s: Session, key: str) -> tuple[User, ApiKey] | None:
    record = s.scalar(select(ApiKey).where(ApiKey.hash == hash_key(key)))
    if record is None or record.revoked_at is not None:
        return None
    user = s.get(User, record.user_id)
    if user is None:
        return None
    if record.last_used_at is None or now() - record.last_used_at > 60:
        record.last_used_at = now()
    return user, record


def create_session(s: Session, user: User, key: ApiKey) -> tuple[WebSession, str]:
    """A browser session for `user`, made from `key`; returns the record and the cookie's token (shown once)."""
    token = secrets.token_urlsafe(32)
    record = WebSession(
        user_id=user.id,
        key_id=key.id,
        hash=hash_key(token),
        csrf=secrets.token_urlsafe(24),
        expires_at=now() + SESSION_TTL_S,
    )
    s.add(record)
    s.flush()
    return record, token


def resolve_session(s: Session, token: str) -> tuple[User, ApiKey, WebSession] | None:
    record = s.scalar(select(WebSession).where(WebSession.hash == hash_key(token)))
    if record is None or record.expires_at < now():
        return None
    key = s.get(ApiKey, record.key_id)
    user = s.get(User, record.user_id)
    if key is None or key.revoked_at is not None or user is None:
        return None
    return user, key, record


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller, from `Authorization: Bearer <key>` or the web app's session cookie (with
    its CSRF token on unsafe methods); 401 otherwise."""
    key = bearer(request)
    services = request.app.state.services
    cookie = request.cookies.get(SESSION_COOKIE)
    if key is None and cookie:
        with services.db.session() as s:
            found_session = resolve_session(s, cookie)
            if found_session is None:
                raise APIError(401, "Your session has expired or was ended; sign in again.", code="session_expired")
            user, record, session = found_session
            if request.method not in SAFE_METHODS and not secrets.compare_digest(  # bytes: any header value
                request.headers.get("x-csrf-token", "").encode(), session.csrf.encode()
            ):
                raise APIError(403, "Missing or wrong X-CSRF-Token for this session.", code="csrf_failed")
            return Principal(
                user_id=user.id,
                email=user.email,
                role=user.role,
                status=user.status,
                key_id=record.id,
                session_id=session.id,
            )
    if key is None:
        raise APIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    with services.db.session() as s:
        found = resolve(s, key)
        if found is None:
            shown = key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "*" * len(key)
            raise APIError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")
        user, record = found
        return Principal(
            user_id=user.id, email=user.email, role=user.role, status=user.status, key_id=record.id
        )


def require_active(p: Principal) -> None:
    if p.status == "suspended":
        raise APIError(
            403,
            "Your account has been suspended after repeated content policy violations. "
            "Contact the administrator of this server.",
            code="account_suspended",
        )
    if p.role == "waitlisted":
        raise APIError(
            403,
            "Your account is on the waitlist. You can use the API once an administrator approves it.",
            code="waitlisted",
        )


def require_admin(p: Principal) -> None:
    """An active admin: a suspended admin's powers are suspended too (it could otherwise lift its own)."""
    require_active(p)
    if p.role != "admin":
        raise APIError(403, "This endpoint is for administrators only.", code="insufficient_role")


def require_feature(p: Principal, feature: str, features: dict[str, list[str]], what: str) -> None:
    if p.role not in features.get(feature, []):
        raise APIError(
            403, f"Your role ({p.role}) does not allow {what} on this server.", code="insufficient_role"
        )


def user_json(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "object": "user",
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "status": user.status,
        "credits": user.credits,
        "created_at": int(user.created_at),
        "approved_at": int(user.approved_at) if user.approved_at else None,
    }


def key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "object": "api_key",
        "user_id": key.user_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": int(key.created_at),
        "last_used_at": int(key.last_used_at) if key.last_used_at else None,
        "revoked": key.revoked_at is not None,
    }
