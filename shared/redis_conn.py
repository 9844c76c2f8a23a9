"""Redis clients built from settings (one text client, one bytes client for blobs)."""

from __future__ import annotations

from functools import lru_cache

import redis

from shared.settings import get_settings


@lru_cache(maxsize=8)
def _client(url: str, decode: bool) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=decode, health_check_interval=30)


def text_redis(url: str | None = None) -> redis.Redis:
    """Client returning str: state, meta, events."""
    return _client(url or get_settings().redis_url, True)


def bytes_redis(url: str | None = None) -> redis.Redis:
    """Client returning bytes: artifact blobs."""
    return _client(url or get_settings().redis_url, False)


def reachable(url: str, timeout_s: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def redacted(url: str) -> str:
    """A Redis URL fit to print: its password hidden."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else f"{scheme}://***@{host}"
    return url
