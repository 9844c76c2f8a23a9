"""The one LLM code path: the `openai` client against any OpenAI-compatible endpoint.

Every call streams, so a call can be given up at once: when its run is cancelled
(`should_stop`) or its stage's deadline passes, the stream is closed and the endpoint stops
generating. Connection errors, 429 and 5xx are retried (tenacity, exponential backoff); a
timed-out call never is, since the endpoint may still be working on it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import httpx
import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from shared.errors import LLMCancelled, LLMDeadlineError, LLMError, LLMOutputError
from shared.llm_backlog import LLMBacklog
from shared.settings import Settings

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk

UsageSink = Callable[[str, int, int, float], None]  # stage, prompt tokens, completion tokens, seconds
WaitSink = Callable[[str, int], None]  # stage, requests ahead at the endpoint
STAGE_HEADER = "X-HGQ-Stage"
STOP_CHECK_S = 0.5  # how often a stream asks whether its run was cancelled
_FORMAT_OVERRIDE: dict[str, str] = {}  # endpoint -> response_format form it accepts (learned once)
_NO_STREAM_USAGE: set[str] = set()  # endpoints that refuse stream_options


@lru_cache(maxsize=8)
def _client(base_url: str, api_key: str) -> openai.OpenAI:
    """One client (and connection pool) per endpoint and process: building one costs ~100 ms.
    No retries inside the client: ours retry only what is safe to send again."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return False  # the endpoint may still be generating it
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return True  # (a stream broken mid-way raises httpx's errors: openai does not wrap those)
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


class LLM:
    """Chat completions with per-stage accounting, deadlines, cancellation and JSON output."""

    def __init__(self, settings: Settings, on_usage: UsageSink | None = None, *,
                 should_stop: Callable[[], bool] | None = None, backlog: LLMBacklog | None = None,
                 on_wait: WaitSink | None = None):
        if not settings.openai_base_url:
            raise LLMError("no LLM endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY), "
                           "or run through `hgq ask`/`hgq up`, which start the local LLM")
        self.settings = settings
        self.model = settings.llm_model
        self._max_tokens = settings.llm_max_tokens
        self._on_usage = on_usage
        self._should_stop = should_stop
        self._backlog = backlog
        self._on_wait = on_wait
        self._format = settings.llm_response_format
        self._base_url = settings.openai_base_url
        self._client = _client(settings.openai_base_url, settings.openai_api_key or "no-key")
        self._stage_started: dict[str, float] = {}
        self.calls = 0

    # --- deadlines -----------------------------------------------------------------------------
    def begin(self, stage: str) -> None:
        """Start the stage's deadline now (a stage's first call starts it otherwise): for an LLM
        object that serves one stage many times, such as an evaluation's planner."""
        self._stage_started[stage] = time.monotonic()

    def _deadline(self, stage: str) -> float:
        """Monotonic time by which the stage's calls must be done (from its first call)."""
        started = self._stage_started.setdefault(stage, time.monotonic())
        return started + self.settings.stage_timeout_s(stage)

    def _left(self, stage: str) -> float:
        left = self._deadline(stage) - time.monotonic()
        if left <= 0:
            raise LLMDeadlineError(
                f"LLM stage '{stage}' ran past its deadline of {self.settings.stage_timeout_s(stage):.0f} s "
                "(HGQ_LLM_TIMEOUT_S, or HGQ_LLM_STAGE_TIMEOUTS for one stage)")
        return left

    # --- calls ---------------------------------------------------------------------------------
    def chat(self, stage: str, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             max_tokens: int | None = None, temperature: float = 0.0,
             on_delta: Callable[[str], None] | None = None) -> str:
        """The reply's text; `on_delta` gets each piece as it is generated."""
        fmt = _FORMAT_OVERRIDE.get(self._base_url, self._format) if schema is not None else "none"
        try:
            return self._call(stage, messages, schema, fmt, max_tokens, temperature, on_delta)
        except openai.APIStatusError as exc:
            if fmt != "json_schema" or "json_schema" not in str(exc):
                raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc}") from exc
        # llama-cpp-python's server (and some others) take only {"type": "json_object", "schema": ...}
        _FORMAT_OVERRIDE[self._base_url] = "json_object"
        try:
            return self._call(stage, messages, schema, "json_object", max_tokens, temperature, on_delta)
        except openai.APIError as exc:
            raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc}") from exc

    def _call(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any] | None, fmt: str,
              max_tokens: int | None, temperature: float, on_delta: Callable[[str], None] | None) -> str:
        self._left(stage)
        emitted = [False]

        def piece(text: str) -> None:
            emitted[0] = True
            if on_delta is not None:
                on_delta(text)

        def may_retry(exc: BaseException) -> bool:
            return _transient(exc) and not emitted[0]  # a half-streamed answer is not sent again

        retrying = Retrying(
            retry=retry_if_exception(may_retry), reraise=True,
            stop=stop_after_attempt(self.settings.llm_retries + 1) | stop_after_delay(self._left(stage)),
            wait=wait_exponential(multiplier=self.settings.llm_retry_backoff_s, max=10))
        try:
            for attempt in retrying:
                with attempt:
                    return self._stream(stage, messages, schema, fmt, max_tokens, temperature, piece)
        except (openai.APITimeoutError, httpx.TimeoutException) as exc:
            raise LLMDeadlineError(
                f"LLM stage '{stage}' ran past its deadline of {self.settings.stage_timeout_s(stage):.0f} s "
                "(HGQ_LLM_TIMEOUT_S, or HGQ_LLM_STAGE_TIMEOUTS for one stage)") from exc
        except openai.APIStatusError:
            raise
        except (openai.APIError, httpx.TransportError) as exc:
            raise LLMError(f"LLM endpoint failed in stage '{stage}': {exc!r}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any] | None, fmt: str,
                max_tokens: int | None, temperature: float, on_piece: Callable[[str], None]) -> str:
        started = time.perf_counter()
        deadline = self._deadline(stage)
        kwargs: dict[str, Any] = {}
        if schema is not None and fmt == "json_schema":
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": stage, "schema": schema, "strict": False}}
        elif schema is not None and fmt == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        if self._base_url not in _NO_STREAM_USAGE:
            kwargs["stream_options"] = {"include_usage": True}
        call_id = self._backlog.enter() if self._backlog is not None else None
        first = threading.Event()
        if call_id is not None and self._on_wait is not None and self._backlog is not None and self._backlog.slots:
            threading.Thread(target=self._watch_queue, args=(stage, call_id, first), daemon=True).start()
        self.calls += 1
        try:
            try:
                stream = self._open(stage, messages, temperature, max_tokens, deadline, kwargs)
            except openai.APIStatusError as exc:
                if "stream_options" not in str(exc) or "stream_options" not in kwargs:
                    raise
                _NO_STREAM_USAGE.add(self._base_url)  # endpoint without streamed usage: count pieces
                kwargs.pop("stream_options")
                stream = self._open(stage, messages, temperature, max_tokens, deadline, kwargs)
            pieces, usage = self._read(stage, stream, deadline, first, on_piece)
        finally:
            first.set()
            if call_id is not None and self._backlog is not None:
                self._backlog.leave(call_id)
        content = "".join(pieces)
        if self._on_usage is not None:
            prompt = usage.prompt_tokens if usage else sum(len(m["content"]) for m in messages) // 4
            self._on_usage(stage, prompt, usage.completion_tokens if usage else len(pieces),
                           time.perf_counter() - started)
        if not content:
            raise LLMError(f"LLM returned an empty message in stage '{stage}'")
        return content

    def _open(self, stage: str, messages: list[dict[str, str]], temperature: float, max_tokens: int | None,
              deadline: float, kwargs: dict[str, Any]) -> Any:
        return self._client.chat.completions.create(
            model=self.model, messages=messages, temperature=temperature,  # type: ignore[arg-type]
            max_tokens=max_tokens or self._max_tokens, extra_headers={STAGE_HEADER: stage}, stream=True,
            timeout=max(0.1, deadline - time.monotonic()), **kwargs)

    def _read(self, stage: str, stream: Any, deadline: float, first: threading.Event,
              on_piece: Callable[[str], None]) -> tuple[list[str], Any]:
        pieces: list[str] = []
        usage = None
        next_check = time.monotonic() + STOP_CHECK_S
        try:
            for chunk in cast("Iterable[ChatCompletionChunk]", stream):
                first.set()
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        pieces.append(delta)
                        on_piece(delta)
                now = time.monotonic()
                if now > deadline:
                    raise LLMDeadlineError(
                        f"LLM stage '{stage}' ran past its deadline of "
                        f"{self.settings.stage_timeout_s(stage):.0f} s while generating (stream closed)")
                if self._should_stop is not None and now >= next_check:
                    next_check = now + STOP_CHECK_S
                    if self._should_stop():
                        raise LLMCancelled(f"the run was cancelled during LLM stage '{stage}' (stream closed)")
        finally:
            stream.close()  # closing the connection stops the endpoint's generation
        return pieces, usage

    def _watch_queue(self, stage: str, call_id: str, first: threading.Event) -> None:
        """Until the first token arrives, tell the run how many requests are ahead when that changes."""
        assert self._backlog is not None and self._on_wait is not None
        last: int | None = None
        while not first.wait(0.5 if last is None else 1.0):
            try:
                ahead = self._backlog.ahead(call_id)
            except Exception:  # noqa: BLE001 - progress only
                return
            if ahead is not None and ahead != last and not first.is_set():
                last = ahead
                self._on_wait(stage, ahead)

    def chat_json(self, stage: str, messages: list[dict[str, str]], schema: dict[str, Any],
                  on_delta: Callable[[str], None] | None = None, max_tokens: int | None = None) -> Any:
        """A JSON answer (constrained where the endpoint supports it). Raises LLMError if not JSON."""
        raw = self.chat(stage, messages, schema=schema, on_delta=on_delta, max_tokens=max_tokens)
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
