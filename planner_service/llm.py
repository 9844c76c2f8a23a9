"""The one LLM code path: the `openai` client against any OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from collections.abc import Callable
from typing import Any

import openai

from shared.errors import LLMError
from shared.settings import Settings

UsageSink = Callable[[str, int, int, float], None]  # stage, prompt tokens, completion tokens, seconds
STAGE_HEADER = "X-HGQ-Stage"


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str, timeout_s: float) -> openai.OpenAI:
    """One client (and connection pool) per endpoint and process: building one costs ~100 ms."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=2)


class LLM:
    """Chat completions with per-stage accounting and JSON-constrained output."""

    def __init__(self, settings: Settings, on_usage: UsageSink | None = None):
        if not settings.openai_base_url:
            raise LLMError("no LLM endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY), "
                           "or run through `hgq ask`/`hgq up`, which start the local LLM")
        self.model = settings.llm_model
        self._max_tokens = settings.llm_max_tokens
        self._on_usage = on_usage
        self._format = settings.llm_response_format
        self._client = _client(settings.openai_base_url, settings.openai_api_key or "no-key", settings.llm_timeout_s)

    def chat(self, stage: str, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, temperature: float = 0.0) -> str:
        kwargs: dict[str, Any] = {}
        if schema is not None and self._format == "json_schema":
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": stage, "schema": schema, "strict": False}}
        elif schema is not None and self._format == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        started = time.perf_counter()
        try:
            reply = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=temperature,  # type: ignore[arg-type]
                max_tokens=max_tokens or self._max_tokens, extra_headers={STAGE_HEADER: stage}, **kwargs)
        except openai.APIError as exc:
            raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc}") from exc
        seconds = time.perf_counter() - started
        if not getattr(reply, "choices", None):
            raise LLMError(f"LLM endpoint returned no choices in stage '{stage}'")
        usage = reply.usage
        if self._on_usage is not None:
            self._on_usage(stage, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, seconds)
        content = reply.choices[0].message.content
        if content is None:
            raise LLMError(f"LLM returned an empty message in stage '{stage}'")
        return content

    def chat_json(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any]) -> Any:
        """A JSON answer (constrained where the endpoint supports it). Raises LLMError if not JSON."""
        raw = self.chat(stage, messages, schema=schema)
        try:
            return json.loads(_strip_fences(raw))
        except json.JSONDecodeError as exc:
            raise LLMError(f"LLM answer in stage '{stage}' is not JSON: {exc}: {raw[:200]!r}") from exc


def _strip_fences(raw: str) -> str:
    text = raw.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else text[3:]
        text = text.rsplit("```", 1)[0]
    return text.strip()
