"""Signed, expiring artifact URLs: a link that works without an Authorization header.

Chat UIs render an assistant message's markdown in a browser, where `<img src>` and audio links
cannot send a Bearer key. The chat endpoint therefore links each artifact as
`/v1/artifacts/{id}?exp=UNIX&sig=HMAC`, where HMAC-SHA256 covers the artifact id and the expiry.
The key is HGQ_API_URL_SECRET, or, when unset, one random key created once in Redis and shared
by every API replica. Anyone holding such a URL can fetch that one file until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

import redis

from shared.keys import url_secret_key
from shared.settings import Settings


class UrlSigner:
    def __init__(self, settings: Settings, r: redis.Redis, key_prefix: str):
        self.settings, self.r, self.prefix = settings, r, key_prefix
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def _key(self) -> bytes:
        if self._secret is None:
            with self._lock:
                if self.settings.api_url_secret is not None:
                    self._secret = self.settings.api_url_secret.get_secret_value().encode()
                else:
                    key = url_secret_key(self.prefix)
                    self.r.set(key, secrets.token_hex(32), nx=True)  # the first replica's key wins
                    self._secret = str(self.r.get(key)).encode()
        return self._secret

    def _sig(self, artifact_id: str, exp: int) -> str:
        return hmac.new(self._key(), f"{artifact_id}.{exp}".encode(), hashlib.sha256).hexdigest()[:40]

    def query(self, artifact_id: str, now: float | None = None) -> str:
        exp = int((now if now is not None else time.time()) + self.settings.api_artifact_url_ttl_s)
        return f"exp={exp}&sig={self._sig(artifact_id, exp)}"

    def url(self, base: str, artifact_id: str) -> str:
        """The absolute signed URL (`base`: HGQ_API_PUBLIC_URL or the request's own base URL)."""
        root = (self.settings.api_public_url or base).rstrip("/")
        return f"{root}/v1/artifacts/{artifact_id}?{self.query(artifact_id)}"

    def valid(self, artifact_id: str, exp: str, sig: str) -> bool:
        if not exp.isdigit() or int(exp) < time.time() or len(sig) != 40:
            return False
        return hmac.compare_digest(self._sig(artifact_id, int(exp)), sig)
