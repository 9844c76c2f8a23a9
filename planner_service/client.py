"""Client side of hgq: upload files, submit requests, follow, cancel and read runs.

Used by the CLI and (later) the HTTP API. Planning and execution happen on the queues; the
client only writes the request and publishes the plan stage.
"""

from __future__ import annotations

import json
import mimetypes
import uuid
from collections.abc import Iterator
from pathlib import Path

from celery import Celery

from shared.artifacts import ArtifactStore, artifact_file_name
from shared.conversation import ConversationStore
from shared.dispatch import publish_plan, publish_respond
from shared.errors import ArtifactError, HgqError
from shared.keys import node_task_id
from shared.outputs import ArtifactRef, MediaKind
from shared.plan import validate_plan
from shared.redis_conn import bytes_redis, text_redis
from shared.run_models import ArtifactPublic, RequestCreate, RunEvent, RunPublic, TaskPublic
from shared.run_store import RunStore
from shared.settings import Settings

# What the content sniffer (the `filetype` package) reports -> the type hgq stores. Every audio
# upload is decoded with FFmpeg (PyAV, faster-whisper's decoder), so containers that carry voice
# notes count as audio: m4a/AAC, webm/opus (browser recordings), ogg/opus, mp3, flac, wav.
_SNIFFED: dict[str, tuple[str, MediaKind]] = {
    "image/png": ("image/png", "image"), "image/jpeg": ("image/jpeg", "image"),
    "image/gif": ("image/gif", "image"), "image/webp": ("image/webp", "image"),
    "image/bmp": ("image/bmp", "image"), "image/x-ms-bmp": ("image/bmp", "image"),
    "audio/x-wav": ("audio/wav", "audio"), "audio/wav": ("audio/wav", "audio"),
    "audio/x-flac": ("audio/flac", "audio"), "audio/flac": ("audio/flac", "audio"),
    "audio/ogg": ("audio/ogg", "audio"), "audio/opus": ("audio/ogg", "audio"),
    "audio/mpeg": ("audio/mpeg", "audio"), "audio/mp4": ("audio/mp4", "audio"), "audio/x-m4a": ("audio/mp4", "audio"),
    "audio/aac": ("audio/aac", "audio"), "audio/webm": ("audio/webm", "audio"),
    "video/webm": ("audio/webm", "audio"),  # a webm voice note (MediaRecorder) sniffs as video
}


def sniff_media(data: bytes, name: str) -> tuple[str, MediaKind]:
    """MIME type from the content (magic bytes, via `filetype`), not the name."""
    import filetype

    kind = filetype.guess(data[:8192])
    if kind is None and (data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")):
        return "audio/mpeg", "audio"
    if kind is not None and kind.mime in _SNIFFED:
        return _SNIFFED[kind.mime]
    if kind is not None and kind.mime == "video/mp4" and name.lower().endswith((".m4a", ".mp4a", ".aac")):
        return "audio/mp4", "audio"  # an audio-only MPEG-4 file that does not say M4A in its header
    guess = kind.mime if kind is not None else (mimetypes.guess_type(name)[0] or "application/octet-stream")
    raise ArtifactError(f"{name}: unsupported file type (looks like {guess}); hgq takes images (png, jpeg, gif, "
                        "webp, bmp) and audio (wav, flac, mp3, ogg/opus, m4a/aac, webm)")


class HgqClient:
    def __init__(self, settings: Settings, app: Celery):
        self.settings = settings
        self.app = app
        self.artifacts = ArtifactStore(bytes_redis(settings.redis_url), settings.key_prefix, settings.artifact_ttl_s,
                                       settings.max_artifact_bytes)

    def run(self, run_id: str) -> RunStore:
        s = self.settings
        return RunStore(text_redis(s.redis_url), s.key_prefix, run_id, s.run_ttl_s)

    def upload(self, path: Path) -> ArtifactRef:
        if not path.is_file():
            raise ArtifactError(f"{path}: no such file")
        return self.put_file(path.read_bytes(), path.name)

    def put_file(self, data: bytes, name: str) -> ArtifactRef:
        """Store a user's file under its sniffed type (ArtifactError for a type hgq does not take)."""
        mime, kind = sniff_media(data, name)
        return self.artifacts.put(data, mime, kind, name)

    def uploads_for(self, paths: list[Path]) -> dict[str, ArtifactRef]:
        """Each file is known by its name and by the path the user gave."""
        out: dict[str, ArtifactRef] = {}
        for path in paths:
            ref = self.upload(path)
            out[path.name] = ref
            out[str(path)] = ref
        return out

    def submit(self, request: RequestCreate) -> str:
        """Accept a request (idempotent for a caller-supplied id). An explicit plan is checked
        against the catalogue first: an invalid one raises PlanError and nothing is enqueued."""
        if request.plan is not None:
            earlier = self.conversation_files(request.conversation_id)
            validate_plan(request.plan, {**earlier, **request.uploads})
        run_id = request.request_id or uuid.uuid4().hex[:16]
        if self.run(run_id).create(request.model_copy(update={"request_id": run_id})):
            publish_plan(self.app, run_id)
        return run_id

    def conversation_files(self, conversation_id: str | None) -> dict[str, ArtifactRef]:
        if conversation_id is None:
            return {}
        s = self.settings
        return ConversationStore(text_redis(s.redis_url), s.key_prefix, conversation_id, s.run_ttl_s).files()

    def follow(self, run_id: str) -> Iterator[RunEvent]:
        return self.run(run_id).follow()

    def cancel(self, run_id: str) -> list[int]:
        """Cancel a run: queued nodes are revoked, nothing new starts, running nodes finish."""
        run = self.run(run_id)
        step = run.cancel()
        if step.ready:
            self.app.control.revoke([node_task_id(run_id, n) for n in step.ready])
        if step.finalize:
            publish_respond(self.app, run_id)
        return step.ready

    def view(self, run_id: str, artifact_dir: Path | None = None) -> RunPublic:
        run = self.run(run_id)
        meta = run.meta()
        plan = run.plan()
        states, outputs, infos, attempts = run.node_states(), run.outputs(), run.infos(), run.attempts()
        tasks: dict[str, TaskPublic] = {}
        artifacts: list[ArtifactPublic] = []
        for node in plan.nodes if plan else []:
            info = infos.get(node.id)
            out = outputs.get(node.id)
            tasks[str(node.id)] = TaskPublic(
                id=node.id, task=node.task, status=states.get(node.id, "pending"),
                queue=info.queue if info else None, worker=info.worker if info else None,
                model=(info.model if info and info.model else node.model), pid=info.pid if info else None,
                started_at=info.started_at if info else None, finished_at=info.finished_at if info else None,
                attempts=attempts.get(node.id, 0), output=out, error=info.error if info else None,
                fallbacks=node.fallbacks, model_attempts=info.model_attempts if info else [])
            for ref in out.artifacts if out else []:
                artifacts.append(ArtifactPublic(task=node.id, id=ref.id, kind=ref.kind, mime=ref.mime, size=ref.size,
                                                path=self._save(ref, node.id, artifact_dir, run_id)))
        return RunPublic(
            request_id=run_id, status=meta.get("status", "accepted"), request=run.request().text,
            plan=[n.public() for n in plan.nodes] if plan else [], tasks=tasks, response=meta.get("response"),
            error=meta.get("error"), artifacts=artifacts, usage=run.usage(),
            selection=json.loads(meta.get("selection", "{}")),
            created_at=float(meta["created_at"]) if "created_at" in meta else None,
            finished_at=float(meta["finished_at"]) if "finished_at" in meta else None)

    def _save(self, ref: ArtifactRef, node_id: int, artifact_dir: Path | None, run_id: str) -> str | None:
        if artifact_dir is None:
            return None
        folder = artifact_dir / run_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / artifact_file_name(node_id, ref)
        try:
            path.write_bytes(self.artifacts.get(ref.id))
        except HgqError:
            return None
        return str(path)
