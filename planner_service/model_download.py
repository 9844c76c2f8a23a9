"""`hgq models download`: the weights HGQ_MODELS_FILE's local models need, fetched from the Hub once,
on a machine with network (workers never download: they load from disk)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shared.custom_models import DiffusersModel, TransformersModel, load_models_file
from shared.settings import Settings


class DownloadError(Exception):
    """A download that failed (no network, unknown repo, no access)."""


def repos_of(settings: Settings, model_ids: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(model id, repo id) for each Hub repo the local models of the models file name."""
    if settings.models_file is None:
        raise DownloadError("HGQ_MODELS_FILE is not set: there is nothing to download")
    models = [m for m in load_models_file(settings.models_file) if isinstance(m, TransformersModel | DiffusersModel)]
    unknown = sorted(set(model_ids) - {m.id for m in models})
    if unknown:
        raise DownloadError(f"not a transformers or diffusers model of {settings.models_file}: {', '.join(unknown)}")
    out: list[tuple[str, str]] = []
    for model in models:
        if model_ids and model.id not in model_ids:
            continue
        refs = [model.weights] + ([model.controlnet] if isinstance(model, DiffusersModel) and model.controlnet else [])
        out += [(model.id, ref) for ref in refs if not Path(ref).expanduser().is_absolute() and (model.id, ref) not in out]
    return out


def download_models(settings: Settings, model_ids: tuple[str, ...] = ()) -> Iterator[str]:
    from huggingface_hub import snapshot_download

    repos = repos_of(settings, model_ids)
    if not repos:
        yield "no Hub repos to fetch (the local models name folders)"
        return
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    for model_id, repo in repos:
        target = Path(settings.model_dir).expanduser() / repo.replace("/", "--") if settings.model_dir else None
        try:
            path = snapshot_download(repo, local_dir=target, token=token)
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated: all end the command the same way
            raise DownloadError(f"{model_id}: cannot fetch {repo} from the Hugging Face Hub (this needs network "
                                f"access to it): {type(exc).__name__}: {exc}") from exc
        yield f"{model_id}: {repo} -> {path}"
