"""`hgq models`: the models live workers serve (what the planner can choose from), a check of
HGQ_MODELS_FILE, and `hgq models download` (the weights of its transformers and diffusers models,
for a machine with network). planner_service/cli.py calls `register(main)`."""

from __future__ import annotations

import sys

import click

from shared.errors import HgqError
from shared.settings import get_settings


def check_models_file() -> str | None:
    """A line about HGQ_MODELS_FILE (None when unset); ConfigError when it is invalid."""
    from shared.custom_models import load_models_file

    settings = get_settings()
    if settings.models_file is None:
        return None
    models = load_models_file(settings.models_file)
    by_backend = ", ".join(f"{m.id} ({m.task}, {m.backend}, {m.served_pool} pool)" for m in models) or "no models"
    return f"HGQ_MODELS_FILE {settings.models_file}: valid: {by_backend}"


@click.group("models", invoke_without_command=True)
@click.option("--check", is_flag=True, help="only validate HGQ_MODELS_FILE (no Redis needed)")
@click.option("--task", default=None, help="only this task type")
@click.pass_context
def models_cmd(ctx: click.Context, check: bool, task: str | None) -> None:
    """List the models live workers serve, per pool and task type (and check HGQ_MODELS_FILE)."""
    if ctx.invoked_subcommand is not None:
        return
    from shared.redis_conn import text_redis
    from shared.registry import live_workers

    settings = get_settings()
    try:
        line = check_models_file()
        if line:
            click.echo(line, err=not check)
        if check:
            return
        workers = live_workers(text_redis(settings.redis_url), settings.key_prefix)
    except HgqError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable and the like
        click.echo(f"error: cannot read the registry at {settings.redis_url}: {exc}", err=True)
        sys.exit(1)
    rows: dict[tuple[str, str, str], tuple[str, str, set[str]]] = {}
    for worker in workers:
        for model in worker.models:
            if task is None or model.task == task:
                key = (worker.pool, model.task, model.model_id)
                rows.setdefault(key, (model.backend, model.description, set()))[2].add(worker.hostname)
    if not rows:
        click.echo("no live worker serves a model" + (f" for {task}" if task else ""))
        return
    click.echo(f"{'pool':<7}{'task':<30}{'model':<45}{'backend':<14}{'workers':>7}  description")
    for (pool, task_name, model_id), (backend, description, hosts) in sorted(rows.items()):
        click.echo(f"{pool:<7}{task_name:<30}{model_id:<45}{backend:<14}{len(hosts):>7}  {description[:60]}")


@models_cmd.command("download")
@click.argument("model_ids", nargs=-1)
def download_cmd(model_ids: tuple[str, ...]) -> None:
    """Fetch the weights of HGQ_MODELS_FILE's transformers and diffusers models (or only MODEL_IDS) from
    the Hugging Face Hub: into HGQ_MODEL_DIR/<org>--<name> when it is set, else the Hugging Face cache.
    Needs network access to the Hub; workers then load them offline."""
    from planner_service.model_download import DownloadError, download_models

    try:
        for line in download_models(get_settings(), model_ids):
            click.echo(line)
    except (HgqError, DownloadError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(models_cmd, "models")
