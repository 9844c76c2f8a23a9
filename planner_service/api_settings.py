"""Settings of the HTTP API (read from HGQ_API_* variables; to be merged into shared/settings.py)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MIME = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg")


class ApiSettings(BaseSettings):
    """Knobs of `hgq api`. Per-user limits are defaults; `hgq keys create --rpm/--max-concurrent`
    overrides them for one user."""

    model_config = SettingsConfigDict(env_prefix="HGQ_", env_file=".env", extra="ignore")

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
    api_allowed_mime: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_MIME))
    # hosts whose URLs hgq may fetch (image_url / input URLs); empty: never fetch a URL
    api_fetch_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_fetch_timeout_s: float = 10.0
    # streaming and waiting
    api_sse_block_ms: int = Field(2000, ge=50)  # one XREAD wait
    api_sse_ping_s: float = 15.0  # keep-alive comment period
    api_chat_timeout_s: float = 600.0  # non-streaming chat completion: wait this long for the answer
    api_model_name: str = "hgq"  # the model name /v1/models lists
    api_history: int = Field(200, ge=1)  # runs kept in a user's history index

    @field_validator("api_fetch_hosts", "api_allowed_mime", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        """Accept a comma-separated string as well as a JSON list."""
        if isinstance(value, str):
            if value.strip().startswith("["):
                return [str(v).strip().lower() for v in json.loads(value)]
            return [v.strip().lower() for v in value.split(",") if v.strip()]
        return value


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
