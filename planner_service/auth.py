"""API users and safety: hashed API keys, ownership of runs and artifacts, per-user limits.

Everything lives in Redis under the settings' key prefix, so any API replica can serve any user:

    {p}:apikey:{sha256(key)}      JSON KeyInfo            (the key itself is never stored)
    {p}:apikeys                   hash key_id -> sha256   (listing and revoking)
    {p}:apiuser:{user}            hash rpm, max_concurrent (per-user limit overrides)
    {p}:user:{user}:runs          zset run id -> accepted at (history, newest last)
    {p}:user:{user}:active        zset run id -> accepted at (runs not yet final: concurrency)
    {p}:user:{user}:artifacts     set of artifact ids the user uploaded or was shown
    {p}:user:{user}:rate          zset of submission timestamps (sliding one-minute window)
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import secrets
import time
import uuid

import redis
from pydantic import BaseModel

from shared.keys import run_keys
from shared.run_models import FINAL_RUN_STATUSES

USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
KEY_FORMAT = re.compile(r"^hgq_([0-9a-f]{8})_[0-9A-Za-z_-]{20,100}$")


# --- keys ------------------------------------------------------------------------------------
def apikey_key(prefix: str, digest: str) -> str:
    return f"{prefix}:apikey:{digest}"


def apikeys_index_key(prefix: str) -> str:
    return f"{prefix}:apikeys"


def apiuser_key(prefix: str, user: str) -> str:
    return f"{prefix}:apiuser:{user}"


def user_runs_key(prefix: str, user: str) -> str:
    return f"{prefix}:user:{user}:runs"


def user_active_key(prefix: str, user: str) -> str:
    return f"{prefix}:user:{user}:active"


def user_artifacts_key(prefix: str, user: str) -> str:
    return f"{prefix}:user:{user}:artifacts"


def user_rate_key(prefix: str, user: str) -> str:
    return f"{prefix}:user:{user}:rate"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- API keys --------------------------------------------------------------------------------
class KeyInfo(BaseModel):
    key_id: str
    user: str
    created_at: float


class UserLimits(BaseModel):
    rpm: int
    max_concurrent: int


class ApiKeys:
    """API keys: `hgq_<key id>_<secret>`; Redis keeps sha256(key) -> user, never the key."""

    def __init__(self, client: redis.Redis, prefix: str):
        self.r = client
        self.prefix = prefix

    def create(self, user: str, rpm: int | None = None, max_concurrent: int | None = None) -> tuple[str, KeyInfo]:
        if not USER_NAME.match(user):
            raise ValueError(f"user name {user!r} must be 1-64 characters of letters, digits, _ . @ -")
        key_id = secrets.token_hex(4)
        key = f"hgq_{key_id}_{secrets.token_urlsafe(30)}"
        digest = hash_key(key)
        info = KeyInfo(key_id=key_id, user=user, created_at=time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.set(apikey_key(self.prefix, digest), info.model_dump_json())
        pipe.hset(apikeys_index_key(self.prefix), key_id, digest)
        limits = {k: v for k, v in (("rpm", rpm), ("max_concurrent", max_concurrent)) if v is not None}
        if limits:
            pipe.hset(apiuser_key(self.prefix, user), mapping=limits)
        pipe.execute()
        return key, info

    def lookup(self, key: str) -> KeyInfo | None:
        if not KEY_FORMAT.match(key):
            return None
        raw = self.r.get(apikey_key(self.prefix, hash_key(key)))
        return KeyInfo.model_validate_json(raw) if raw else None

    def list(self) -> list[KeyInfo]:
        digests = self.r.hgetall(apikeys_index_key(self.prefix))
        if not digests:
            return []
        raws = self.r.mget([apikey_key(self.prefix, d) for d in digests.values()])
        infos = [KeyInfo.model_validate_json(raw) for raw in raws if raw]
        return sorted(infos, key=lambda i: (i.user, i.created_at))

    def revoke(self, key_or_user: str) -> builtins.list[KeyInfo]:
        """Revoke one key (by key id, or the key itself) or every key of a user."""
        match = KEY_FORMAT.match(key_or_user)
        key_id = match.group(1) if match else key_or_user
        infos = self.list()
        gone = [i for i in infos if i.key_id == key_id] or [i for i in infos if i.user == key_or_user]
        index = self.r.hgetall(apikeys_index_key(self.prefix))
        for info in gone:
            digest = index.get(info.key_id)
            pipe = self.r.pipeline(transaction=True)
            if digest:
                pipe.delete(apikey_key(self.prefix, digest))
            pipe.hdel(apikeys_index_key(self.prefix), info.key_id)
            pipe.execute()
        return gone


# --- limits ----------------------------------------------------------------------------------
# One round trip for a submission's limits: the user's overrides (hash rpm / max_concurrent, else
# the defaults) and the rate hit counted against that rpm.
# KEYS: apiuser hash, rate zset   ARGV: now, window_s, default rpm, default max concurrent, member
# Returns {wait seconds (0 when admitted), rpm, max_concurrent}.
_ADMIT = """
local rpm = tonumber(redis.call('HGET', KEYS[1], 'rpm') or ARGV[3])
local concurrent = tonumber(redis.call('HGET', KEYS[1], 'max_concurrent') or ARGV[4])
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= rpm then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {tostring(tonumber(oldest[2]) + window - now), rpm, concurrent}
end
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 1)
return {'0', rpm, concurrent}
"""

# KEYS: active zset   ARGV: run id, limit, now, ttl
_ACQUIRE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class Limiter:
    """Per-user sliding-window rate of submissions and a cap on runs in flight."""

    WINDOW_S = 60.0
    GRACE_S = 30.0  # a reserved slot whose run does not exist yet is kept this long

    def __init__(self, client: redis.Redis, prefix: str, run_ttl_s: int):
        self.r = client
        self.prefix = prefix
        self.ttl = run_ttl_s
        self._acquire = client.register_script(_ACQUIRE)
        self._admit = client.register_script(_ADMIT)

    def admit(self, user: str, default_rpm: int, default_concurrent: int) -> tuple[float, UserLimits]:
        """The user's limits (their overrides, else the defaults) and one submission counted against
        the rate, in one round trip: (seconds to wait, 0 when allowed; the limits)."""
        wait, rpm, concurrent = self._admit(keys=[apiuser_key(self.prefix, user), user_rate_key(self.prefix, user)],
                                            args=[repr(time.time()), self.WINDOW_S, default_rpm, default_concurrent,
                                                  uuid.uuid4().hex])
        return float(wait), UserLimits(rpm=int(rpm), max_concurrent=int(concurrent))

    def prune(self, user: str) -> int:
        """Drop finished (or vanished) runs from the user's in-flight set; return how many remain."""
        key = user_active_key(self.prefix, user)
        members = self.r.zrange(key, 0, -1, withscores=True)
        if not members:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for run_id, _ in members:
            pipe.hget(run_keys(self.prefix, run_id).meta, "status")
        statuses = pipe.execute()
        now = time.time()
        done = [run_id for (run_id, added), status in zip(members, statuses, strict=True)
                if (status in FINAL_RUN_STATUSES) or (status is None and now - added > self.GRACE_S)]
        if done:
            self.r.zrem(key, *done)
        return len(members) - len(done)

    def acquire(self, user: str, run_id: str, limit: int) -> bool:
        """Reserve a slot for run_id; finished runs are pruned only when the set looks full."""
        key = user_active_key(self.prefix, user)
        for attempt in range(2):
            if self._acquire(keys=[key], args=[run_id, limit, repr(time.time()), self.ttl]):
                return True
            if attempt == 0 and self.prune(user) >= limit:
                return False
        return False

    def release(self, user: str, run_id: str) -> None:
        self.r.zrem(user_active_key(self.prefix, user), run_id)


# --- ownership -------------------------------------------------------------------------------
class Ownership:
    """Which runs and artifacts belong to which user."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int, history: int):
        self.r = client
        self.prefix = prefix
        self.ttl = ttl_s
        self.history = history

    def owner(self, run_id: str) -> str | None:
        return self.r.hget(run_keys(self.prefix, run_id).meta, "user")

    def owns_run(self, user: str, run_id: str) -> bool:
        return self.owner(run_id) == user

    def record_run(self, user: str, run_id: str) -> None:
        key = user_runs_key(self.prefix, user)
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(key, {run_id: time.time()}, nx=True)
        pipe.zremrangebyrank(key, 0, -self.history - 1)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def runs(self, user: str, limit: int) -> list[str]:
        return list(self.r.zrevrange(user_runs_key(self.prefix, user), 0, limit - 1))

    def record_artifacts(self, user: str, artifact_ids: list[str]) -> None:
        if not artifact_ids:
            return
        key = user_artifacts_key(self.prefix, user)
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(key, *artifact_ids)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def owns_artifact(self, user: str, artifact_id: str) -> bool:
        """An upload of the user, or an output of one of the user's runs (then remembered)."""
        if self.r.sismember(user_artifacts_key(self.prefix, user), artifact_id):
            return True
        runs = self.runs(user, self.history)
        if not runs:
            return False
        pipe = self.r.pipeline(transaction=False)
        for run_id in runs:
            pipe.hvals(run_keys(self.prefix, run_id).outputs)
        for outputs in pipe.execute():
            for raw in outputs:
                if artifact_id in raw and any(a.get("id") == artifact_id
                                              for a in json.loads(raw).get("artifacts", [])):
                    self.record_artifacts(user, [artifact_id])
                    return True
        return False
