"""Every Redis key hgq uses, in one place. All keys live under the settings' key prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunKeys:
    """Keys of one run. They all expire `run_ttl_s` after the run was accepted."""

    prefix: str
    run_id: str

    def _k(self, part: str) -> str:
        return f"{self.prefix}:run:{self.run_id}:{part}"

    @property
    def meta(self) -> str:  # hash: request, plan, status, timestamps, response, error
        return self._k("meta")

    @property
    def state(self) -> str:  # hash: node id -> pending|queued|running|succeeded|failed|skipped|cancelled
        return self._k("state")

    @property
    def waiting(self) -> str:  # hash: node id -> number of dependencies not yet succeeded
        return self._k("waiting")

    @property
    def attempts(self) -> str:  # hash: node id -> deliveries started
        return self._k("attempts")

    @property
    def outputs(self) -> str:  # hash: node id -> TaskOutput JSON, written once (HSETNX)
        return self._k("outputs")

    @property
    def info(self) -> str:  # hash: node id -> NodeInfo JSON (worker, times, error)
        return self._k("info")

    @property
    def usage(self) -> str:  # hash: "<stage>:<counter>" -> int
        return self._k("usage")

    @property
    def events(self) -> str:  # stream of RunEvent
        return self._k("events")

    def lease(self, node_id: int) -> str:
        return self._k(f"lease:{node_id}")

    def all(self) -> list[str]:
        return [self.meta, self.state, self.waiting, self.attempts, self.outputs, self.info, self.usage, self.events]


def run_keys(prefix: str, run_id: str) -> RunKeys:
    return RunKeys(prefix, run_id)


def blob_key(prefix: str, artifact_id: str) -> str:
    return f"{prefix}:blob:{artifact_id}"


def blob_meta_key(prefix: str, artifact_id: str) -> str:
    return f"{prefix}:blobmeta:{artifact_id}"


def workers_key(prefix: str) -> str:
    """Hash: worker hostname -> WorkerAnnouncement JSON."""
    return f"{prefix}:workers"


def workers_expiry_key(prefix: str) -> str:
    """Sorted set: worker hostname -> heartbeat expiry (unix seconds)."""
    return f"{prefix}:workers:expiry"


def runs_index_key(prefix: str) -> str:
    """Sorted set of run ids by acceptance time (for listing and `hgq status`)."""
    return f"{prefix}:runs"


def node_task_id(run_id: str, node_id: int) -> str:
    """Deterministic Celery task id of a node: re-publishing it is idempotent."""
    return f"{run_id}.{node_id}"


def plan_task_id(run_id: str) -> str:
    return f"{run_id}.plan"


def respond_task_id(run_id: str) -> str:
    return f"{run_id}.respond"


def conversation_key(prefix: str, conversation_id: str) -> str:
    """List of Turn JSON, oldest first."""
    return f"{prefix}:conv:{conversation_id}"


def conversation_files_key(prefix: str, conversation_id: str) -> str:
    """Hash: file name -> ArtifactRef JSON, for every file of every turn."""
    return f"{prefix}:conv:{conversation_id}:files"


def llm_calls_key(prefix: str) -> str:
    """Sorted set: LLM call id -> when it was sent (unix seconds), for every call not yet answered."""
    return f"{prefix}:llm:calls"


def reaper_lock_key(prefix: str) -> str:
    """String (PX): the worker that runs this round of the lost-node reaper."""
    return f"{prefix}:reaper"


def url_secret_key(prefix: str) -> str:
    """string: the HMAC key of signed artifact URLs when HGQ_API_URL_SECRET is unset (one per deployment)"""
    return f"{prefix}:url-secret"
