"""The one tree of hgq's domain errors. Every error a user can see is an `HgqError`."""

from __future__ import annotations


class HgqError(Exception):
    """Base of every hgq error; its message is meant for the user."""


class InputError(HgqError):
    """Input that breaks a limit or is not valid text (too deep, too many digits, unpaired surrogates,
    too many tasks): refused with its reason."""


class ConfigError(HgqError):
    """Settings or environment cannot work (missing binary, bad value)."""


class PlanError(HgqError):
    """A plan (from the LLM or the user) is invalid; nothing was enqueued."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid plan: " + "; ".join(problems))


class LLMError(HgqError):
    """The LLM endpoint failed or answered something unusable."""


class LLMOutputError(LLMError):
    """The LLM answered, but not in the required form (not JSON): worth one repair round."""


class LLMDeadlineError(LLMError):
    """An LLM stage ran past its deadline (HGQ_LLM_TIMEOUT_S / HGQ_LLM_STAGE_TIMEOUTS)."""


class LLMCancelled(LLMError):
    """The run was cancelled while the LLM was generating: its stream was closed."""


class StageFailed(HgqError):
    """A plan or respond stage ended its run failed (recorded first): raised so that Celery, Flower
    and the metrics show the stage as failed, not as a success."""


class ArtifactError(HgqError):
    """An artifact is missing, expired or too large."""


class RunNotFound(HgqError):
    """No run with that id (or it expired)."""


class ExpertError(HgqError):
    """An expert model failed permanently on this input (no retry)."""


class TransientExpertError(ExpertError):
    """An expert failed for a reason that may pass (timeout, 5xx, 429): retried with backoff.

    `exhausted`: the expert already retried on its own (a remote call's in-call retries), so the
    node runner moves on to the next candidate model at once instead of retrying this one.
    """

    def __init__(self, message: str = "", exhausted: bool = False):
        super().__init__(message)
        self.exhausted = exhausted


class ModelUnavailable(ExpertError):
    """A model cannot run here (files or runtime missing, not served, remote model gone or refused),
    or cannot do what this input needs though another model may (a language pair it lacks): not the
    input's fault, so the node falls back to its next candidate model."""
