"""The one LLM code path: the `openai` client against any OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import openai

from shared.errors import LLMError, LLMOutputError
from shared.settings import Settings

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk

UsageSink = Callable[[str, int, int, float], None]  # stage, prompt tokens, completion tokens, seconds
STAGE_HEADER = "X-HGQ-Stage"
_FORMAT_OVERRIDE: dict[str, str] = {}  # endpoint -> response_format form it accepts (learned once)
_NO_STREAM_USAGE: set[str] = set()  # endpoints that refuse stream_options


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
        self._base_url = settings.openai_base_url
        self._client = _client(settings.openai_base_url, settings.openai_api_key or "no-key", settings.llm_timeout_s)

    def chat(self, stage: str, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, temperature: float = 0.0,
             on_delta: Callable[[str], None] | None = None) -> str:
        if on_delta is not None and schema is None:
            return self._chat_stream(stage, messages, max_tokens, temperature, on_delta)
        fmt = _FORMAT_OVERRIDE.get(self._base_url, self._format)
        started = time.perf_counter()
        try:
            reply = self._create(stage, messages, schema, fmt, max_tokens, temperature)
        except openai.APIStatusError as exc:
            if schema is None or fmt != "json_schema" or "json_schema" not in str(exc):
                raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc}") from exc
            # llama-cpp-python's server (and some others) take only {"type": "json_object", "schema": ...}
            _FORMAT_OVERRIDE[self._base_url] = "json_object"
            try:
                reply = self._create(stage, messages, schema, "json_object", max_tokens, temperature)
            except openai.APIError as exc2:
                raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc2}") from exc2
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

    def _chat_stream(self, stage: str, messages: list[dict[str, str]], max_tokens: int | None,
                     temperature: float, on_delta: Callable[[str], None]) -> str:
        """Stream the answer, handing each piece to on_delta as it is generated."""
        started = time.perf_counter()
        extra: dict[str, Any] = {} if self._base_url in _NO_STREAM_USAGE else {
            "stream_options": {"include_usage": True}}
        try:
            try:
                stream = self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=temperature,  # type: ignore[arg-type]
                    max_tokens=max_tokens or self._max_tokens, extra_headers={STAGE_HEADER: stage}, stream=True,
                    **extra)
            except openai.APIStatusError as exc:
                if "stream_options" not in str(exc):
                    raise
                _NO_STREAM_USAGE.add(self._base_url)  # endpoint without streamed usage: count pieces
                stream = self._client.chat.completions.create(
                    model=self.model, messages=messages, temperature=temperature,  # type: ignore[arg-type]
                    max_tokens=max_tokens or self._max_tokens, extra_headers={STAGE_HEADER: stage}, stream=True)
            pieces: list[str] = []
            usage = None
            for chunk in cast("Iterable[ChatCompletionChunk]", stream):
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        pieces.append(delta)
                        on_delta(delta)
        except openai.APIError as exc:
            raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc}") from exc
        content = "".join(pieces)
        if self._on_usage is not None:
            prompt = usage.prompt_tokens if usage else sum(len(m["content"]) for m in messages) // 4
            self._on_usage(stage, prompt, usage.completion_tokens if usage else len(pieces),
                           time.perf_counter() - started)
        if not content:
            raise LLMError(f"LLM returned an empty message in stage '{stage}'")
        return content

    def _create(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any] | None, fmt: str,
                max_tokens: int | None, temperature: float) -> Any:
        kwargs: dict[str, Any] = {}
        if schema is not None and fmt == "json_schema":
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": stage, "schema": schema, "strict": False}}
        elif schema is not None and fmt == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return self._client.chat.completions.create(
            model=self.model, messages=messages, temperature=temperature,  # type: ignore[arg-type]
            max_tokens=max_tokens or self._max_tokens, extra_headers={STAGE_HEADER: stage}, **kwargs)

    def chat_json(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any]) -> Any:
        """A JSON answer (constrained where the endpoint supports it). Raises LLMError if not JSON."""
        raw = self.chat(stage, messages, schema=schema)
        try:
            return json.loads(_strip_fences(raw))
        except json.JSONDecodeError as exc:
            raise LLMOutputError(f"LLM answer in stage '{stage}' is not JSON: {exc}: {raw[:200]!r}") from exc


def _strip_fences(raw: str) -> str:
    text = raw.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else text[3:]
        text = text.rsplit("```", 1)[0]
    return text.strip()
