"""`create_app(settings)`: the FastAPI application (API under /v1, web app at /)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from unclip.service import actions, errors
from unclip.service.auth import ADMIN_EMAIL, ADMIN_KEY_NAME, create_key, create_user, hash_key
from unclip.service.db import ApiKey, Database, User, now
from unclip.service.engines import Loader, ModelRegistry
from unclip.service.images import ImageService
from unclip.service.jobs import JobManager
from unclip.service.middleware import BodyLimit, NoNulInUrl, RequestId, SecurityHeaders
from unclip.service.policy import (
    OffenderRules,
    Policy,
    face_detector_ready,
    load_policy,
    offender_rules,
    use_provenance_key,
)
from unclip.service.ratelimit import RateLimiter
from unclip.service.remote import RemoteJobs
from unclip.service.settings import Settings
from unclip.service.storage import BlobStore, UrlSigner, load_secret

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
log = logging.getLogger("unclip.service")
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
BROKER_WAIT_S = 30.0  # a broker that starts beside the server (one compose file) is waited for this long


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    signer: UrlSigner
    registry: ModelRegistry
    jobs: JobManager | RemoteJobs
    limiter: RateLimiter
    policy: Policy
    images: ImageService

    @property
    def offenders(self) -> OffenderRules:
        """Repeat-offender thresholds from the policy as it is now (edits to the file apply at once)."""
        return offender_rules(self.policy)


def build_services(
    settings: Settings,
    *,
    engines: dict[str, Any] | None = None,
    engine_loader: Loader | None = None,
    policy: Policy | None = None,
) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    store = BlobStore(settings.data_dir / "images")
    store.check_writable()
    signer = UrlSigner(load_secret(settings.data_dir, settings.secret_key), settings.url_ttl_s)
    use_provenance_key(settings.data_dir)
    registry = ModelRegistry.from_settings(settings, engine_loader, engines)
    jobs: JobManager | RemoteJobs
    if settings.broker_url:
        from unclip.service.dispatch import Dispatcher

        dispatcher = Dispatcher(settings.broker_url, heartbeat_s=settings.broker_heartbeat_s)
        dispatcher.wait(BROKER_WAIT_S)  # jobs would only pile up in the database, unsent
        jobs = RemoteJobs(
            db,
            dispatcher,
            queue_size=settings.queue_size,
            redispatch_s=settings.redispatch_s,
            sweep_s=min(5.0, settings.redispatch_s / 2, settings.lease_s / 2),
        )
    else:
        jobs = JobManager(
            db,
            store,
            registry,
            workers=settings.workers,
            queue_size=settings.queue_size,
            batch_images=settings.batch_images,
        )
    policy = policy if policy is not None else load_policy(settings.policy_file or None)
    sv = Services(
        settings=settings,
        db=db,
        store=store,
        signer=signer,
        registry=registry,
        jobs=jobs,
        limiter=RateLimiter(),
        policy=policy,
        images=None,
    )  # type: ignore[arg-type]
    sv.images = ImageService(sv)
    return sv


def prepare(sv: Services) -> None:
    """Startup work before the first request (blocking, a few seconds): the content policy's classifier, the
    face detector, the default model. A default model that does not load stops the server here."""
    warm_up = getattr(sv.policy, "warm_up", None)
    if warm_up is not None:
        warm_up()
    problem = face_detector_ready()
    if problem:
        log.error(
            "the face detector does not work (%s): uploads that need the realistic-face check will be "
            "answered 503; install unclip[safety] (opencv-python-headless<5)",
            problem,
        )
    if sv.jobs.workers:  # with a broker, the workers load the models
        sv.registry.get(sv.registry.default)


def bootstrap_admin(db: Database, settings: Settings) -> str | None:
    """On a server with no users, create `admin@localhost` (role admin) and return its API key, once.

    With `UNCLIP_ADMIN_KEY` set, that key is made to exist (for an admin) and is not returned."""
    with db.session() as s:
        if settings.admin_key:
            _ensure_admin_key(s, settings.admin_key)
            return None
        if not settings.bootstrap_admin or s.scalar(select(User.id).limit(1)) is not None:
            return None
        admin = create_user(s, ADMIN_EMAIL, name="admin", role="admin")
        record, key = create_key(s, admin, name="bootstrap")
        actions.record(s, None, "user.create", admin, role=admin.role, by="first start")
        actions.record(s, None, "key.create", admin, key_id=record.id, by="first start")
        return key


def _ensure_admin_key(s: Session, key: str) -> None:
    """`key` becomes the active admin key of `admin@localhost`, replacing the UNCLIP_ADMIN_KEY before it. A key
    that was revoked (by an admin, or replaced by another UNCLIP_ADMIN_KEY) or that is another account's stops
    the server: bringing it back would also keep the key that replaced it working."""
    record = s.scalar(select(ApiKey).where(ApiKey.hash == hash_key(key)))
    admin = s.scalar(select(User).where(User.email == ADMIN_EMAIL))
    if record is not None and (admin is None or record.user_id != admin.id):
        raise RuntimeError(f"UNCLIP_ADMIN_KEY is another account's API key, not {ADMIN_EMAIL}'s: choose a new key")
    if record is not None and record.revoked_at is not None:
        raise RuntimeError(
            "UNCLIP_ADMIN_KEY was revoked (by an admin, or replaced by a later UNCLIP_ADMIN_KEY): choose a new key"
        )
    if admin is None:
        admin = create_user(s, ADMIN_EMAIL, name="admin", role="admin")
        actions.record(s, None, "user.create", admin, role=admin.role, by="UNCLIP_ADMIN_KEY")
    if admin.role != "admin" or admin.status != "active":
        raise RuntimeError(
            f"UNCLIP_ADMIN_KEY: the account {ADMIN_EMAIL} is {admin.status} with role {admin.role}, not an "
            f"active admin; make it one (`unclip users role {ADMIN_EMAIL} admin`, `unclip users suspend --lift "
            f"{ADMIN_EMAIL}`) or unset UNCLIP_ADMIN_KEY"
        )
    earlier = ApiKey.user_id == admin.id, ApiKey.name == ADMIN_KEY_NAME, ApiKey.revoked_at.is_(None)
    for old in s.scalars(select(ApiKey).where(*earlier)):
        if record is None or old.id != record.id:
            old.revoked_at = now()
            actions.record(s, None, "key.revoke", admin, key_id=old.id, by="UNCLIP_ADMIN_KEY")
    if record is None:
        created, _ = create_key(s, admin, name=ADMIN_KEY_NAME, key=key)
        actions.record(s, None, "key.create", admin, key_id=created.id, by="UNCLIP_ADMIN_KEY")


def create_app(
    settings: Settings | None = None,
    *,
    engines: dict[str, Any] | None = None,
    engine_loader: Loader | None = None,
    policy: Policy | None = None,
) -> FastAPI:
    """The server. `engines` (name → engine object) and `policy` are injectable for tests."""
    settings = settings or Settings.from_env()
    sv = build_services(settings, engines=engines, engine_loader=engine_loader, policy=policy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        await anyio.to_thread.run_sync(prepare, sv)
        sv.jobs.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(sv.jobs.stop, settings.shutdown_grace_s)
            sv.db.dispose()

    app = FastAPI(
        title="unclip API",
        version="1",
        summary="Self-hosted unCLIP images: an OpenAI-compatible Images API (dall-e-2 contract) plus jobs, "
        "outpainting, blends, upscaling, history, accounts and moderation.",
        lifespan=lifespan,
        docs_url=None,  # served below from the installed swagger-ui-bundle: no CDN, works offline
        openapi_url="/openapi.json",
        redoc_url=None,
        responses=errors.ERROR_RESPONSES,
    )
    app.state.services = sv
    errors.install(app)
    app.openapi = lambda: _openapi_with_bearer(app)  # type: ignore[method-assign]

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(NoNulInUrl)
    app.add_middleware(SecurityHeaders, image_origin=_origin(settings.public_url))
    app.add_middleware(RequestId)  # the outermost: the answers the others make themselves (413, 400) carry it too

    from unclip.service.routers import accounts, admin, images, jobs, models, moderations

    for module in (images, jobs, models, moderations, accounts, admin):
        app.include_router(module.router)
    _local_docs(app)

    @app.api_route("/v1/{path:path}", methods=list(ALL_METHODS), include_in_schema=False)
    async def _unknown(request: Request, path: str) -> None:
        # before the web app's mount, which would answer another method than GET 405 Method Not Allowed
        raise errors.APIError(404, f"Invalid URL ({request.method} {request.url.path})")

    if settings.serve_web and (WEB_DIR / "index.html").exists():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app


def _origin(url: str | None) -> str | None:
    """`scheme://host[:port]` of a URL, or None."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _local_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its assets served by this server (FastAPI's default loads them from a CDN,
    which leaves the page blank without internet)."""
    from fastapi import HTTPException
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(swagger_ui_path)
    files = {name: assets / name for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")}

    # only what /docs loads: the bundle's folder also has a stock index.html that renders a third party's spec
    @app.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        if name not in files:
            raise HTTPException(404)  # answered as any unknown URL
        return FileResponse(files[name])

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="unclip API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def draining_server(app: FastAPI, **config: Any) -> Any:
    """A uvicorn server for `app` whose shutdown signal first drains the job queue (JobManager.drain): no new
    job, waiting requests of unstarted jobs answered 503 and refunded, running jobs given the grace period.
    uvicorn then waits for open requests a little longer than that grace."""
    import threading

    import uvicorn

    sv = app.state.services
    grace = float(sv.settings.shutdown_grace_s)
    config.setdefault("timeout_graceful_shutdown", int(grace) + 5)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            threading.Thread(target=sv.jobs.drain, args=(grace,), daemon=True).start()
            super().handle_exit(sig, frame)

    return Server(uvicorn.Config(app, **config))


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with the API-key bearer scheme that every /v1 operation but signup takes."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "ApiKeyAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An unclip API key (sk-unclip-…).",
            }
        }
        open_paths = {"/v1/signup", "/v1/files/{image_id}.png"}  # signed URLs carry their own signature
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                op.get("responses", {}).pop("422", None)  # validation errors are answered 400, as OpenAI does
                signs_in = (path, method) == ("/v1/session", "post")  # with the key in its body
                if path.startswith("/v1") and path not in open_paths and not signs_in:
                    op["security"] = [{"ApiKeyAuth": []}]
        app.openapi_schema = schema
    return app.openapi_schema
