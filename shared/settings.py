"""The one settings object of hgq, read from the environment (and an optional .env file)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

POOLS: tuple[str, ...] = ("text", "vision", "audio")
DEFAULT_API_MIME = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                    "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "audio/mp4", "audio/aac", "audio/webm")
LLM_QUEUE = "llm"
ALL_QUEUES: tuple[str, ...] = (*POOLS, LLM_QUEUE)
LANE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,23}$"  # a lane: a pool's workers apart (a GPU host), `hgq worker POOL --lane`


def lane_queue(pool: str, lane: str | None) -> str:
    """The queue a pool's workers consume: the pool's own, or `pool.lane` for a lane's workers."""
    return f"{pool}.{lane}" if lane else pool


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
BROKER_SCHEMES = ("redis", "rediss", *AMQP_SCHEMES)


class Settings(BaseSettings):
    """Every knob of hgq. Unknown `HGQ_*` variables are ignored; invalid values fail at startup."""

    model_config = SettingsConfigDict(env_prefix="HGQ_", env_file=".env", extra="ignore")

    # --- infrastructure ---------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # the Celery broker; unset: the Redis above. amqp://user:pass@host:5672/vhost puts the queues on
    # RabbitMQ (quorum queues) while Redis keeps runs, state and results
    broker_url: str | None = None
    key_prefix: str = "hgq"

    # --- LLM controller (any OpenAI-compatible endpoint) --------------------------------
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: str | None = Field(None, validation_alias="OPENAI_API_KEY")
    llm_model: str = "qwen2.5-coder-1.5b-instruct"
    llm_timeout_s: float = Field(120.0, gt=0)  # one stage's deadline (all its LLM calls), unless set below
    # per-stage deadlines, JSON: {"plan": 90, "select": 20, "respond": 60, "task": 120}
    llm_stage_timeouts: dict[Literal["plan", "select", "respond", "task"], float] = Field(default_factory=dict)
    # retries of connection errors, 429 and 5xx only: a timed-out call is never sent again (the
    # endpoint may still be working on it, and a retry would queue behind it)
    llm_retries: int = Field(2, ge=0)
    llm_retry_backoff_s: float = Field(0.5, ge=0)
    # how many calls the endpoint serves at once, for queue positions ("planning, 2 requests
    # ahead"); 0 = unknown (the embedded LLM sets it to its slots)
    llm_slots: int = Field(0, ge=0)
    # LLM calls in flight + plan/respond stages queued, past which the API answers 503 (0 = no limit)
    llm_max_backlog: int = Field(64, ge=0)
    # answer without the LLM when one task's result is the answer (a transcript, a text read from
    # an image, a made file) and nothing needs combining or explaining
    direct_answers: bool = True
    # start a task while the plan still streams, as soon as its part of the plan is complete and
    # it can run now (a root whose model is certain); the whole plan is still checked at the end
    stream_plan: bool = True
    llm_max_tokens: int = 1024
    llm_context_tokens: int = 4096
    llm_response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    conversation_max_tokens: int = 1500  # history handed to the LLM, oldest turns dropped first
    # embedded local LLM (used when no OPENAI_BASE_URL is set)
    local_llm: str = "qwen2.5-coder-1.5b"  # or qwen2.5-coder-0.5b
    local_llm_port: int = 0  # 0 = pick a free port
    local_llm_path: Path | None = None  # a GGUF file to use instead of the resolved one
    local_llm_threads: int = 0  # 0 = all cores
    # which server runs it: llama.cpp's llama-server (parallel slots, continuous batching; built
    # by `make setup`) or llama-cpp-python's (one request at a time); auto = llama-server if built
    local_llm_server: Literal["auto", "llama-server", "python"] = "auto"
    local_llm_parallel: int = Field(4, ge=1)  # llama-server slots: requests generated at once
    # Prompt-state cache of the local server: the planner's long prompt prefix survives the other
    # stages' calls (plan after a response: 21 s -> 4.5-8 s here). 0 turns it off. On disk (under
    # HGQ_HOME) it also survives restarts: a fresh server's first plan skips the prompt prefix.
    local_llm_cache_mb: int = Field(default=1024, ge=0)
    local_llm_cache: Literal["disk", "ram"] = "disk"

    # --- execution -----------------------------------------------------------------------
    task_soft_time_limit_s: float = 120.0
    task_hard_time_limit_s: float = 150.0
    task_max_attempts: int = 3  # deliveries of one node before it is failed as poison
    task_max_retries: int = 3  # retries of transient errors
    task_retry_backoff_s: float = 0.5
    lease_s: float = 6.0  # node lease, renewed while the node runs
    run_ttl_s: int = 86400
    artifact_ttl_s: int = 86400
    max_artifact_bytes: int = 64 * 1024 * 1024
    worker_heartbeat_s: float = 3.0
    preload_models: bool = True
    # how long a stage or node whose Redis went away waits for it before it gives up (its message
    # stays unacknowledged meanwhile; the step then runs again)
    redis_outage_s: float = Field(120.0, ge=0)
    diagnostics: bool = False  # register the diag-* task types (benchmarks and tests)
    worker_concurrency: int = 2
    max_fallbacks: int = Field(2, ge=0)  # candidate models a node falls back to when its model fails

    # --- model sources: custom models, remote inference (workers/remote/) -------------------------
    models_file: Path | None = None  # HGQ_MODELS_FILE: YAML of user models (shared/custom_models.py)
    hf_token: SecretStr | None = Field(None, validation_alias=AliasChoices("HF_TOKEN", "HGQ_HF_TOKEN"))
    hf_provider: str = "auto"  # InferenceClient provider for repo ids ("hf-inference" pins HF's own)
    # with HF_TOKEN set, which task types each pool also offers catalogue models for, remotely:
    # "missing" = only those no local model serves, "all" = every task type, "off" = none
    hf_remote: Literal["missing", "all", "off"] = "missing"
    remote_models_per_task: int = Field(2, ge=0)  # catalogue models announced per task type
    remote_timeout_s: float = Field(30.0, gt=0)  # one HTTP call to an inference endpoint
    remote_retries: int = Field(2, ge=0)  # in-call retries on 429, 5xx, timeouts, connection errors
    remote_backoff_s: float = Field(1.0, ge=0)  # first wait; doubles each retry (a Retry-After header wins)
    remote_backoff_max_s: float = Field(20.0, ge=0)  # longest single wait

    # --- local stack -----------------------------------------------------------------------
    output_dir: Path = Path("hgq-output")
    flower_port: int = 5555
    flower_host: str = "127.0.0.1"
    home: Path = Path.home() / ".cache" / "hgq"
    model_dir: Path | None = None

    # --- operations (monitoring/: Flower, Prometheus, logs, graceful stop) ------------------------
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr("")  # required off loopback (monitoring/flower.py)
    metrics_port: int | None = None  # workers' Prometheus endpoint (first worker of a host binds it); None: off
    metrics_host: str = "127.0.0.1"
    metrics_dir: Path | None = None  # prometheus multiprocess folder of this host's workers (default <home>/metrics)
    log_format: Literal["json", "text"] = "json"
    soft_shutdown_on_sigterm: bool = True  # SIGTERM = cold shutdown with soft shutdown: long tasks handed back
    worker_soft_shutdown_s: float = 60.0  # what running tasks get after SIGTERM before they are handed back

    # --- HTTP API (planner_service/api.py) --------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_workers: int = Field(1, ge=1)  # uvicorn processes of one replica
    # auth: with api_auth off, a request without a key is user "local" (single-user laptops)
    api_auth: bool = True
    # per-user limits
    api_rate_per_minute: int = Field(60, ge=1)  # submissions (requests + chat completions) per minute
    api_max_concurrent: int = Field(8, ge=1)  # runs not yet final
    api_max_upload_bytes: int = Field(16 * 1024 * 1024, ge=1)  # one file
    api_max_uploads: int = Field(8, ge=0)  # files per request
    api_max_body_bytes: int = Field(80 * 1024 * 1024, ge=1)  # one HTTP body
    api_allowed_mime: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_API_MIME))
    # hosts whose URLs hgq may fetch (image_url / input URLs); empty: never fetch a URL
    api_fetch_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_fetch_timeout_s: float = 10.0  # the whole fetch of one URL
    # fetch from allow-listed hosts even when they resolve to loopback, private or link-local
    # addresses (a local file server); off, an allowed name pointing inside is refused
    api_fetch_private: bool = False
    # streaming and waiting
    api_sse_block_ms: int = Field(2000, ge=50)  # one XREAD wait
    api_sse_ping_s: float = 15.0  # keep-alive comment period
    api_chat_timeout_s: float = 600.0  # non-streaming chat completion: wait this long for the answer
    api_model_name: str = "hgq"  # the model name /v1/models lists
    api_history: int = Field(200, ge=1)  # runs kept in a user's history index
    # chat content links artifacts with signed, expiring URLs that need no header (a browser <img>)
    api_public_url: str | None = None  # e.g. https://hgq.example.com behind a proxy; default: the request's own
    api_url_secret: SecretStr | None = None  # HMAC key of those URLs; unset: one random key kept in Redis
    api_artifact_url_ttl_s: int = Field(24 * 3600, ge=60)  # how long a signed artifact URL works
    # `hgq mcp` re-reads the live workers this often and tells listening clients when its tools change
    mcp_tools_poll_s: float = Field(5.0, gt=0)
    # client side: `hgq ask` goes through this API when a URL is set
    api_url: str | None = None  # HGQ_API_URL, e.g. http://127.0.0.1:8000
    api_key: str | None = None  # HGQ_API_KEY

    @field_validator("api_fetch_hosts", "api_allowed_mime", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        """Accept a comma-separated string as well as a JSON list."""
        if isinstance(value, str):
            if value.strip().startswith("["):
                return [str(v).strip().lower() for v in json.loads(value)]
            return [v.strip().lower() for v in value.split(",") if v.strip()]
        return value

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker_scheme(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and value.split("://", 1)[0].lower() not in BROKER_SCHEMES:
            raise ValueError(f"HGQ_BROKER_URL must start with one of {', '.join(s + '://' for s in BROKER_SCHEMES)}")
        return value

    @field_validator("api_url_secret", mode="before")
    @classmethod
    def _real_secret(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and (len(value) < 16 or value.lower() in {"changeme", "change-me", "secret"}):
            raise ValueError("HGQ_API_URL_SECRET must be a random string of at least 16 characters "
                             "(e.g. python -c 'import secrets; print(secrets.token_hex(32))'), or unset")
        return value

    @field_validator("hf_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("task_hard_time_limit_s")
    @classmethod
    def _hard_after_soft(cls, hard: float, info) -> float:  # type: ignore[no-untyped-def]
        soft = info.data.get("task_soft_time_limit_s", 0.0)
        if hard <= soft:
            raise ValueError(f"HGQ_TASK_HARD_TIME_LIMIT_S ({hard}) must exceed the soft limit ({soft})")
        return hard

    def stage_timeout_s(self, stage: str) -> float:
        """The deadline of one LLM stage: all its calls (a repair round included) fit in it."""
        return float(self.llm_stage_timeouts.get(stage, self.llm_timeout_s))  # type: ignore[call-overload]

    @property
    def broker(self) -> str:
        """The Celery broker's URL: HGQ_BROKER_URL, else REDIS_URL."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        return self.broker.split("://", 1)[0].lower() in AMQP_SCHEMES

    @property
    def visibility_timeout_s(self) -> int:
        """Broker visibility timeout: always longer than the hard time limit (see ARCHITECTURE)."""
        return int(self.task_hard_time_limit_s * 2 + 60)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
