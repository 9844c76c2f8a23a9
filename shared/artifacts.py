"""Content-addressed artifact store: uploads and generated media live here, passed by reference."""

from __future__ import annotations

import hashlib
import json

import redis

from shared.errors import ArtifactError
from shared.keys import blob_key, blob_meta_key
from shared.outputs import ArtifactRef, MediaKind

_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp", "image/bmp": "bmp",
        "audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/ogg": "ogg", "audio/flac": "flac",
        "audio/mp4": "m4a", "audio/aac": "aac", "audio/webm": "webm", "video/mp4": "mp4", "video/webm": "webm"}


def extension(mime: str) -> str:
    return _EXT.get(mime, mime.split("/")[-1] or "bin")


def artifact_file_name(task_id: int, ref: ArtifactRef) -> str:
    """The name a generated file is known by: in the answer, the CLI's output folder and the API."""
    return f"task{task_id}-{ref.id[:12]}.{extension(ref.mime)}"


class ArtifactStore:
    """Blobs keyed by sha256 with a TTL; storing the same bytes twice stores them once."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int, max_bytes: int):
        self._r = client
        self._prefix = prefix
        self._ttl = ttl_s
        self._max = max_bytes

    def put(self, data: bytes, mime: str, kind: MediaKind, name: str | None = None) -> ArtifactRef:
        if len(data) > self._max:
            raise ArtifactError(f"artifact of {len(data)} bytes exceeds the limit of {self._max} bytes")
        digest = hashlib.sha256(data).hexdigest()
        ref = ArtifactRef(id=digest, mime=mime, kind=kind, size=len(data), name=name)
        pipe = self._r.pipeline(transaction=True)
        pipe.set(blob_key(self._prefix, digest), data, ex=self._ttl, nx=True)
        pipe.expire(blob_key(self._prefix, digest), self._ttl)  # refresh TTL when reused
        pipe.set(blob_meta_key(self._prefix, digest), ref.model_dump_json(), ex=self._ttl)
        pipe.execute()
        return ref

    def get(self, artifact_id: str) -> bytes:
        data = self._r.get(blob_key(self._prefix, artifact_id))
        if data is None:
            raise ArtifactError(f"artifact {artifact_id[:12]} is missing or expired")
        return bytes(data)

    def ref(self, artifact_id: str) -> ArtifactRef:
        raw = self._r.get(blob_meta_key(self._prefix, artifact_id))
        if raw is None:
            raise ArtifactError(f"artifact {artifact_id[:12]} is missing or expired")
        return ArtifactRef.model_validate(json.loads(raw))
