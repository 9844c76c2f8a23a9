"""Route of artifacts: a stored file, to its owner only, with its MIME type."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from planner_service.api.errors import ApiError
from planner_service.api.schemas import ARTIFACT_ID
from planner_service.api.service import Service, User
from planner_service.api.uploads import safe_name
from shared.errors import ArtifactError


def register(app: FastAPI, svc: Service) -> None:
    # --- artifacts ---------------------------------------------------------------------------------
    @app.get("/v1/artifacts/{artifact_id}", tags=["artifacts"], summary="A stored file with its MIME type",
             response_class=Response)
    def get_artifact(artifact_id: str, user: User) -> Response:
        missing = ApiError(404, f"no artifact {artifact_id[:64]}", "not_found_error", "artifact_id")
        if not ARTIFACT_ID.match(artifact_id) or not svc.owners.owns_artifact(user, artifact_id):
            raise missing
        try:
            ref = svc.client.artifacts.ref(artifact_id)
            data = svc.client.artifacts.get(artifact_id)
        except ArtifactError as exc:
            raise missing from exc
        name = safe_name(ref.name or artifact_id[:12], ref.mime)
        return Response(content=data, media_type=ref.mime, headers={
            "Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "private, max-age=3600",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "ETag": f'"{artifact_id}"'})
