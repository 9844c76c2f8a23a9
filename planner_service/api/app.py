"""The HTTP API of hgq: the app factory. Routes live in `routes_*` and `openai_facade`, the logic
in `service`.

Stateless: every fact lives in Redis (runs through HgqClient/RunStore, users and limits through
planner_service/auth.py), so any number of replicas can serve any user, and a replica killed
mid-request loses nothing. Planning and execution happen on the queues, never in a handler.

    uvicorn --factory planner_service.api:create_api_from_env     (or `hgq api`)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from planner_service.api import openai_facade, routes_artifacts, routes_requests, routes_service
from planner_service.api.errors import ApiError, error_body, validation_error
from planner_service.api.middleware import BodyLimit, CatchAll
from planner_service.api.schemas import ChatIn, RequestIn
from planner_service.api.service import Service
from planner_service.client import HgqClient
from shared.errors import HgqError, RunNotFound
from shared.settings import Settings, get_settings
from shared.version import VERSION

log = logging.getLogger(__name__)


def create_api(settings: Settings | None = None, api_settings: Settings | None = None,
               client: HgqClient | None = None) -> FastAPI:
    settings = settings or get_settings()
    api_settings = api_settings or settings
    svc = Service(settings, api_settings, client)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 128
        try:
            await anyio.to_thread.run_sync(svc.warm, 16)
        except Exception as exc:  # noqa: BLE001 - Redis may be down at start: the API starts anyway
            log.warning("could not open connections ahead of requests: %s", exc)
        yield
        if svc.aredis is not None:
            await svc.aredis.aclose()
            svc.aredis = None

    app = FastAPI(title="hgq", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="HuggingGPT on Celery and Redis: requests, live events, artifacts, and an "
                              "OpenAI-compatible chat endpoint. Authenticate with `Authorization: Bearer <key>`.")
    app.state.service = svc
    _offline_docs(app)

    # --- errors ------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.type, exc.field, exc.details),
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return await _api_error(_, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(exc.status_code, str(exc.detail), type_, None),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(OperationalError)
    async def _outage(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(503, "hgq's Redis or its broker is not reachable right now; nothing was "
                                            "accepted: retry shortly", "service_unavailable", None),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(HgqError)
    async def _hgq(_: Request, exc: HgqError) -> JSONResponse:
        status = 404 if isinstance(exc, RunNotFound) else 400
        return JSONResponse(error_body(status, str(exc), "invalid_request_error", None), status_code=status)

    app.add_middleware(CatchAll)  # innermost of hgq's: the metrics middleware sees its 500s
    app.add_middleware(BodyLimit, max_bytes=api_settings.api_max_body_bytes)

    routes_service.register(app, svc)
    routes_requests.register(app, svc)
    routes_artifacts.register(app, svc)
    openai_facade.register(app, svc)
    _add_schemas(app)
    return app


def _offline_docs(app: FastAPI) -> None:
    """/docs with the Swagger UI assets of the swagger-ui-bundle package, served here: it works with
    no internet (FastAPI's default loads them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Any:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="hgq API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="data:,")


def _add_schemas(app: FastAPI) -> None:
    """Put the bodies read by hand (RequestIn on the multi-content endpoint, ChatIn on the chat
    endpoint, both parsed with hgq's JSON limits) into the OpenAPI components."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base()
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (RequestIn, ChatIn):
            extra = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in extra.pop("$defs", {}).items():
                comps.setdefault(name, sub)
            comps[model.__name__] = extra
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_api_from_env() -> FastAPI:
    """uvicorn factory: settings from the environment."""
    from monitoring.logging import setup_logging

    setup_logging()
    return create_api(get_settings())

