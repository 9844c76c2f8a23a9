"""RemoteExpert: one model served by a remote inference server, as an expert of its task's pool.

Classes are made at run time (`remote_expert_class`) for the catalogue's models (when HF_TOKEN is
set) and for the `hf-inference` / `endpoint` entries of HGQ_MODELS_FILE.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from shared.errors import ModelUnavailable
from shared.outputs import ExpertResult
from shared.settings import Settings, get_settings
from workers.expert import Expert, InputValue
from workers.remote.calls import CALLS
from workers.remote.transport import RetryPolicy, call_with_retries

RemoteBackend = Literal["hf-inference", "endpoint"]


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


class RemoteExpert(Expert):
    backend: ClassVar[str] = "hf-inference"
    target: ClassVar[str]  # a Hub repo id, or an endpoint URL
    timeout_s: ClassVar[float | None] = None  # None: HGQ_REMOTE_TIMEOUT_S
    token_env: ClassVar[str | None] = None  # None: HF_TOKEN

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if cls.task in CALLS else f"no remote inference call for task type '{cls.task}'"

    def _load(self) -> None:
        from huggingface_hub import InferenceClient  # no network: the client only keeps its settings

        settings = get_settings()
        token = self._token(settings)
        # an endpoint gets no token unless one is configured (never the one `hf auth login` saved)
        headers = {"authorization": None} if token is None and is_url(self.target) else None
        self._client = InferenceClient(
            model=self.target, token=token, timeout=self.timeout_s or settings.remote_timeout_s,
            headers=headers, provider=None if is_url(self.target) else settings.hf_provider)  # type: ignore[arg-type]
        self._policy = RetryPolicy.from_settings(settings)

    def _token(self, settings: Settings) -> str | None:
        if self.token_env:
            token = os.environ.get(self.token_env)
            if not token:
                raise ModelUnavailable(f"{self.model_id}: ${self.token_env} (its token) is not set")
            return token
        return settings.hf_token.get_secret_value() if settings.hf_token else None

    def run(self, inputs: Mapping[str, InputValue], params: Mapping[str, Any]) -> ExpertResult:
        call = CALLS[self.task]
        where = self.target if is_url(self.target) else f"Hugging Face inference for {self.target}"
        return call_with_retries(lambda: call(self._client, inputs, params), where, self._policy)


def remote_expert_class(model_id: str, task: str, pool: str, backend: RemoteBackend, target: str,
                        description: str = "", timeout_s: float | None = None,
                        token_env: str | None = None) -> type[RemoteExpert]:
    name = "Remote_" + re.sub(r"\W", "_", model_id)
    attrs = {"model_id": model_id, "task": task, "pool": pool, "backend": backend, "target": target,
             "description": description, "timeout_s": timeout_s, "token_env": token_env, "__module__": __name__}
    return type(name, (RemoteExpert,), attrs)
