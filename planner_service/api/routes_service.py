"""Routes about the service itself: Prometheus metrics, capabilities, health, readiness, the web page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from planner_service.api.service import Service, User
from shared.catalog import TASK_TYPES
from shared.redis_conn import reachable
from shared.registry import candidates, live_workers, pools_alive
from shared.settings import ALL_QUEUES

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def register(app: FastAPI, svc: Service) -> None:
    settings = svc.settings

    # --- Prometheus (unauthenticated: scrape it on an internal network only) -----------------------
    from monitoring.metrics import MetricsMiddleware, exposition

    app.add_middleware(MetricsMiddleware)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    # --- capabilities and health -------------------------------------------------------------------
    @app.get("/v1/capabilities", tags=["service"], summary="Task types and models the live workers serve now")
    def capabilities(user: User) -> dict[str, Any]:
        workers = live_workers(svc.r, settings.key_prefix)
        served = candidates(workers)
        tasks = {}
        for name, models in sorted(served.items()):
            spec = TASK_TYPES.get(name)
            tasks[name] = {
                "pool": spec.pool if spec else None, "description": spec.description if spec else "",
                "inputs": {k: {"kind": s.kind, "required": s.required} for k, s in spec.inputs.items()} if spec else {},
                "produces": sorted(spec.produces) if spec else [],
                "models": [m.model_dump() for m in models]}
        pools: dict[str, int] = {}
        for w in workers:
            pools[w.pool] = pools.get(w.pool, 0) + w.concurrency
        return {"tasks": tasks, "pools": {q: pools.get(q, 0) for q in ALL_QUEUES},
                "workers": [{"hostname": w.hostname, "pool": w.pool, "concurrency": w.concurrency} for w in workers]}

    @app.get("/healthz", tags=["service"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"], summary="Redis reachable and a live worker in every pool")
    def readyz() -> JSONResponse:
        redis_ok = reachable(settings.redis_url)
        alive: set[str] = set()
        if redis_ok:
            try:
                alive = pools_alive(live_workers(svc.r, settings.key_prefix))
            except redis.RedisError:
                redis_ok = False
        pools = {q: q in alive for q in ALL_QUEUES}
        ready = redis_ok and all(pools.values())
        return JSONResponse({"ready": ready, "redis": redis_ok, "pools": pools}, status_code=200 if ready else 503)

    # --- web page -------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: data:; "
                                       "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
                                       "frame-ancestors 'none'",
            "Cache-Control": "no-cache"})

    if WEB_DIR.is_dir():
        app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
