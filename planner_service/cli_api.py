"""`hgq api` and `hgq keys ...`: the HTTP API alone, and API key management.

planner_service/cli.py calls `register(main)`; `python -m planner_service.cli_api ...` works on its own.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from planner_service.cli_progress import err as _err
from shared.settings import get_settings


def api_command_line(host: str | None = None, port: int | None = None) -> list[str]:
    """The command line that runs one API replica (for `hgq up` and tests)."""
    args = [sys.executable, "-m", "planner_service.cli_api", "api"]
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    return args


def start_api_process(stack: Any, host: str | None = None, port: int | None = None,
                      timeout_s: float = 30) -> str:
    """Start the API beside a planner_service.stack.Stack (its env, logs and stop); return its URL."""
    from planner_service.stack import _port_open, wait_for

    api = get_settings()
    host = host or api.api_host
    port = port if port is not None else api.api_port
    if _port_open(host, port):
        from shared.errors import ConfigError

        raise ConfigError(f"port {host}:{port} is in use: set HGQ_API_PORT to another port")
    proc = stack._spawn("api", api_command_line(host, port))
    wait_for(lambda: _port_open(host, port), timeout_s, "api", proc)
    url = f"http://{host}:{port}"
    stack.say(f"api: {url} (docs at {url}/docs, web page at {url}/; the page and the API need a key: "
              f"hgq keys create NAME)")
    return url


# --- `hgq ask` through the API (HGQ_API_URL) ----------------------------------------------------
def _raise_for(resp: Any) -> None:
    """An API error as the CLI's errors: a plan problem is a PlanError (exit 2), the rest HgqError."""
    from shared.errors import HgqError, PlanError

    if resp.status_code < 400:
        return
    try:
        err = resp.json()["error"]
    except Exception:  # noqa: BLE001
        raise HgqError(f"API answered HTTP {resp.status_code}: {resp.text[:300]}") from None
    if err.get("field") == "plan":
        raise PlanError([d["problem"] for d in err.get("details", [])] or [err.get("message", "")])
    field = f"{err['field']}: " if err.get("field") else ""
    retry = f" (retry after {resp.headers['retry-after']}s)" if "retry-after" in resp.headers else ""
    raise HgqError(f"API answered HTTP {resp.status_code}: {field}{err.get('message')}{retry}")


def _events(http: Any, run_id: str, deadline: float) -> Any:
    """RunEvents of a run from the API's SSE stream, resuming with Last-Event-ID after a broken
    connection (another replica may answer), until `done`."""
    import httpx

    from shared.errors import HgqError
    from shared.run_models import RunEvent

    last = ""
    while True:
        try:
            with http.stream("GET", f"/v1/requests/{run_id}/events",
                             headers={"Last-Event-ID": last} if last else {}) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _raise_for(resp)
                eid, data = "", ""
                for line in sse_lines(resp.iter_bytes()):
                    if line.startswith("id: "):
                        eid = line[4:]
                    elif line.startswith("data: "):
                        data += line[6:]
                    elif line == "" and data:
                        payload = json.loads(data)
                        ev = RunEvent(id=eid, type=str(payload.pop("type", "message")), data=payload)
                        last, data = eid or last, ""
                        yield ev
                        if ev.type == "done":
                            return
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise HgqError(f"lost the API's event stream: {exc}") from exc
            time.sleep(0.5)


def sse_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """The lines of an event stream as the SSE spec splits them: at CR, LF or CRLF only (httpx's
    iter_lines also splits at U+2028, U+2029 and U+0085, which may sit inside a JSON string)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = re.split(rb"\r\n|\r|\n", buffer)
        for line in lines:
            yield line.decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


def ask_via_api(url: str, key: str | None, request: str, files: list[Path], plan: list[Any] | None,
                request_id: str | None = None, conversation_id: str | None = None, timeout: float = 900.0,
                show: bool = True, output_dir: Path | None = None) -> Any:
    """`hgq ask` against a running API: same progress lines (stderr) and the same RunPublic."""
    import httpx

    from planner_service.cli_progress import show_event as _show_event
    from shared.artifacts import artifact_file_name
    from shared.errors import HgqError
    from shared.run_models import RunPublic

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data: dict[str, str] = {"text": request}
    if plan is not None:
        data["plan"] = json.dumps([t.model_dump() if hasattr(t, "model_dump") else t for t in plan])
    if request_id:
        data["request_id"] = request_id
    if conversation_id:
        data["conversation_id"] = conversation_id
    try:
        uploads = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files]
    except OSError as exc:
        raise HgqError(f"cannot read file: {exc}") from exc
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=httpx.Timeout(60, read=120)) as http:
        try:
            resp = http.post("/v1/requests", data=data, files=uploads or None)
        except httpx.HTTPError as exc:
            raise HgqError(f"the API at {url} is not reachable: {exc}") from exc
        _raise_for(resp)
        run_id = resp.json()["request_id"]
        if show:
            _err(f"request {run_id} accepted by {url}")
        deadline = time.monotonic() + timeout
        names: dict[int, str] = {}
        try:
            for ev in _events(http, run_id, deadline + 60):
                if show:
                    _show_event(ev, names)
                if time.monotonic() > deadline:
                    _err(f"timed out after {timeout:.0f}s: cancelling {run_id}")
                    http.delete(f"/v1/requests/{run_id}")
                    deadline = float("inf")
        except KeyboardInterrupt:
            _err(f"cancelling {run_id}")
            http.delete(f"/v1/requests/{run_id}")
            raise
        resp = http.get(f"/v1/requests/{run_id}")
        _raise_for(resp)
        view = RunPublic.model_validate(resp.json())
        for art in view.artifacts if output_dir is not None else []:
            got = http.get(f"/v1/artifacts/{art.id}")
            if got.status_code != 200:
                continue
            assert output_dir is not None
            folder = output_dir / run_id
            folder.mkdir(parents=True, exist_ok=True)
            from shared.outputs import ArtifactRef

            path = folder / artifact_file_name(art.task, ArtifactRef(id=art.id, mime=art.mime, kind=art.kind,
                                                                     size=art.size))
            path.write_bytes(got.content)
            art.path = str(path)
        return view


@click.command("api")
@click.option("--host", default=None, help="listen address (default HGQ_API_HOST, 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (default HGQ_API_PORT, 8000)")
@click.option("--workers", "workers", default=None, type=int, help="uvicorn processes (default HGQ_API_WORKERS)")
@click.option("--log-level", default="warning", show_default=True)
def api_cmd(host: str | None, port: int | None, workers: int | None, log_level: str) -> None:
    """Serve the HTTP API and the web page (one replica; run more anywhere, all state is in Redis)."""
    import uvicorn

    from planner_service.api.http_protocol import JsonErrorH11Protocol
    from shared.redis_conn import reachable

    api = get_settings()
    settings = get_settings()
    if not reachable(settings.redis_url):
        _err(f"warning: Redis at {settings.redis_url} is not reachable yet; /readyz says so until it is")
    host = host or api.api_host
    port = port if port is not None else api.api_port
    _err(f"hgq api on http://{host}:{port} (docs /docs, web page /; get a key for them with hgq keys create NAME)")
    uvicorn.run("planner_service.api:create_api_from_env", factory=True, host=host, port=port,
                workers=workers or api.api_workers, log_level=log_level, timeout_graceful_shutdown=5,
                proxy_headers=False, http=JsonErrorH11Protocol)


@click.group("keys")
def keys_group() -> None:
    """API keys: each key belongs to a user; Redis stores only its sha256."""


def _keys():  # type: ignore[no-untyped-def]
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    settings = get_settings()
    return ApiKeys(text_redis(settings.redis_url), settings.key_prefix)


@keys_group.command("create")
@click.argument("name")
@click.option("--rpm", type=int, default=None,
              help="requests per minute for this user (default HGQ_API_RATE_PER_MINUTE)")
@click.option("--max-concurrent", type=int, default=None,
              help="runs in flight for this user (default HGQ_API_MAX_CONCURRENT)")
def keys_create(name: str, rpm: int | None, max_concurrent: int | None) -> None:
    """Create a key for user NAME and print it (shown once)."""
    import redis

    try:
        key, info = _keys().create(name, rpm=rpm, max_concurrent=max_concurrent)
    except ValueError as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    except redis.RedisError as exc:
        _err(f"error: Redis is not reachable: {exc}")
        sys.exit(1)
    _err(f"key {info.key_id} for user {info.user} (store it now: it is not shown again)")
    click.echo(key)


@keys_group.command("list")
def keys_list() -> None:
    """Key ids, users and creation times (never the keys)."""
    infos = _keys().list()
    if not infos:
        _err("no API keys (hgq keys create NAME)")
    for info in infos:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
        click.echo(f"{info.key_id}  {info.user:<24} {stamp}")


@keys_group.command("revoke")
@click.argument("key_id_or_user")
def keys_revoke(key_id_or_user: str) -> None:
    """Revoke a key (by its id, or the key) or every key of a user."""
    gone = _keys().revoke(key_id_or_user)
    if not gone:
        _err(f"error: no key or user {key_id_or_user!r}")
        sys.exit(1)
    for info in gone:
        click.echo(f"revoked {info.key_id} ({info.user})")


def register(main: click.Group) -> None:
    """Add `api` and `keys` to the hgq command group."""
    main.add_command(api_cmd, "api")
    main.add_command(keys_group, "keys")


@click.group()
def _standalone() -> None:
    """hgq API commands."""


register(_standalone)

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _standalone()
