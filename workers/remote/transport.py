"""Calling a remote inference server: in-call retries with backoff, and errors in hgq's terms.

429, 5xx, timeouts and connection errors are retried here (HGQ_REMOTE_RETRIES, exponential
backoff from HGQ_REMOTE_BACKOFF_S, a Retry-After header wins, capped at HGQ_REMOTE_BACKOFF_MAX_S);
when they persist the call raises TransientExpertError(exhausted=True), so the node moves on to
its next candidate model. 401/403/404/410 (no access, model gone) raise ModelUnavailable (next
candidate too); any other 4xx is the input's fault: ExpertError with the server's message, no retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.errors import ExpertError, ModelUnavailable, TransientExpertError
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
UNAVAILABLE_STATUSES = frozenset({401, 403, 404, 410})


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff_s: float = 1.0
    backoff_max_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.remote_retries, settings.remote_backoff_s, settings.remote_backoff_max_s)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wait = retry_after if retry_after is not None else self.backoff_s * 2**attempt
        return max(0.0, min(wait, self.backoff_max_s))


def call_with_retries(fn: Callable[[], T], what: str, policy: RetryPolicy,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """fn(), retried on transient failures; every failure raised as an hgq ExpertError."""
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except ExpertError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; nothing escapes unclassified
            error = classify(exc, what)
            if not isinstance(error, TransientExpertError):
                raise error from exc
            if attempt == policy.retries:
                tries = f" (after {attempt + 1} tries)" if attempt else ""
                raise TransientExpertError(f"{error}{tries}", exhausted=True) from exc
            wait = policy.delay(attempt, _retry_after(exc))
            log.warning("%s; retry %d/%d in %.1fs", error, attempt + 1, policy.retries, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def classify(exc: BaseException, what: str) -> ExpertError:
    """An exception of huggingface_hub / httpx as TransientExpertError, ModelUnavailable or ExpertError."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, OfflineModeIsEnabled

    if isinstance(exc, (InferenceTimeoutError, httpx2.TimeoutException, TimeoutError)):
        return TransientExpertError(f"{what}: timed out")
    if isinstance(exc, OfflineModeIsEnabled):
        return ModelUnavailable(f"{what}: offline mode is on (HF_HUB_OFFLINE); remote inference is off")
    if isinstance(exc, HfHubHTTPError) and getattr(exc, "response", None) is not None:
        status = exc.response.status_code
        detail = f"{what}: HTTP {status}: {server_message(exc)}"
        if status == 429 or status >= 500:
            return TransientExpertError(detail)
        if status in UNAVAILABLE_STATUSES:
            return ModelUnavailable(detail)
        return ExpertError(detail)
    if isinstance(exc, (httpx2.TransportError, ConnectionError)):
        return TransientExpertError(f"{what}: cannot connect: {exc}")
    if isinstance(exc, ImportError):
        return ModelUnavailable(f"{what}: {exc}")
    # the client could not map the model (no provider serves it) or could not read the answer
    return ModelUnavailable(f"{what}: {type(exc).__name__}: {str(exc)[:500]}")


def server_message(exc: BaseException) -> str:
    """What the server said (the `error` of HF's JSON replies, which huggingface_hub extracts),
    else the first line of the exception."""
    message = getattr(exc, "server_message", None)
    if not message:
        lines = str(exc).strip().splitlines()
        message = lines[0] if lines else ""
    return " ".join(str(message).split())[:500] or "(no message)"


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
