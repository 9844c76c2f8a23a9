"""Route of artifacts: a stored file with its MIME type, to its owner (Bearer key) or to whoever
holds a valid signed URL for it (`?exp=&sig=`, see signed_urls.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from planner_service.api.errors import ApiError
from planner_service.api.schemas import ARTIFACT_ID
from planner_service.api.service import BEARER, Service
from planner_service.api.uploads import safe_name
from shared.errors import ArtifactError


def register(app: FastAPI, svc: Service) -> None:
    # --- artifacts ---------------------------------------------------------------------------------
    @app.get("/v1/artifacts/{artifact_id}", tags=["artifacts"], summary="A stored file with its MIME type",
             response_class=Response)
    def get_artifact(artifact_id: str, request: Request,
                     _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
                     exp: Annotated[str | None, Query(max_length=20, description="signed URL: expiry")] = None,
                     sig: Annotated[str | None, Query(max_length=80, description="signed URL: HMAC")] = None,
                     ) -> Response:
        missing = ApiError(404, f"no artifact {artifact_id[:64]}", "not_found_error", "artifact_id")
        if not ARTIFACT_ID.match(artifact_id):
            raise missing
        if exp is not None or sig is not None:
            if not svc.signer.valid(artifact_id, exp or "", sig or ""):
                raise ApiError(403, "this artifact link is invalid or has expired: ask again for a fresh one",
                               "permission_error", "sig")
        elif not svc.owners.owns_artifact(svc.user_for(request.headers.get("authorization")), artifact_id):
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
