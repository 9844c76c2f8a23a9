"""A second worker stack (its own Redis DB) whose workers load a HGQ_MODELS_FILE: user models (a
Python function) and endpoint models served by the fake Hugging Face endpoint of tests.

Only the llm and text pools run: the remote and custom models of these tests are text models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.fake_hf_endpoint import FakeHFEndpoint

# id -> (task, description); the descriptions' rare words let a request's text rank one first
ENDPOINT_MODELS = {
    "remote/a-flaky": ("text-classification", "quokka sentiment endpoint"),
    "remote/b-slow": ("text-classification", "wombat sentiment endpoint"),
    "remote/c-steady": ("text-classification", "quokka wombat sentiment endpoint"),
    "remote/d-strict": ("text-classification", "numbat sentiment endpoint"),
}
PYTHON_MODELS = [
    {"id": "test/reverse-words", "task": "text2text-generation", "backend": "python",
     "callable": "tests.custom_model_example:reverse_words",
     "description": "reverses the order of the words of a text (word reversal, backwards)"},
    {"id": "test/broken-summary", "task": "summarization", "backend": "python",
     "callable": "tests.custom_model_example:broken_summary",
     "description": "platypus summaries (always crashes)"},
]


@dataclass
class ModelsStack:
    client: Any
    settings: Any
    models_file: Path
    fake: FakeHFEndpoint

    def url(self, model_id: str) -> str:
        task, _ = ENDPOINT_MODELS[model_id]
        return self.fake.url(task, model_id.split("/")[-1])


def write_models_file(path: Path, fake: FakeHFEndpoint) -> Path:
    endpoints = [{"id": model_id, "task": task, "backend": "endpoint", "description": description,
                  "url": fake.url(task, model_id.split("/")[-1])}
                 for model_id, (task, description) in ENDPOINT_MODELS.items()]
    path.write_text(yaml.safe_dump({"models": [*PYTHON_MODELS, *endpoints]}, sort_keys=False))
    return path


@contextmanager
def models_stack(hgq_env: dict[str, str], fake: FakeHFEndpoint, home: Path) -> Iterator[ModelsStack]:
    from planner_service.client import HgqClient
    from planner_service.stack import Stack
    from shared.settings import Settings
    from workers.app import create_app

    models_file = write_models_file(home / "models.yaml", fake)
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}  # no token: no catalogue candidates
    env.update(hgq_env)
    env.update({
        "REDIS_URL": hgq_env["REDIS_URL"].rsplit("/", 1)[0] + "/3",  # own queues: other workers use DB 0
        "HGQ_HOME": str(home), "HGQ_MODELS_FILE": str(models_file), "HGQ_WORKER_CONCURRENCY": "2",
        "HGQ_REMOTE_TIMEOUT_S": "1", "HGQ_REMOTE_RETRIES": "1", "HGQ_REMOTE_BACKOFF_S": "0.05",
    })
    settings = Settings(_env_file=None).model_copy(update={
        "redis_url": env["REDIS_URL"], "models_file": models_file, "home": home})
    stack = Stack(settings, say=lambda m: None, log_dir=home / "logs", env=env)
    try:
        stack.start_workers(("llm", "text"))
        yield ModelsStack(HgqClient(settings, create_app(settings)), settings, models_file, fake)
    finally:
        stack.stop()
