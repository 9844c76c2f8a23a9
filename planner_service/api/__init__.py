"""The HTTP API (`hgq api`): `create_api` builds the app; `create_api_from_env` is uvicorn's factory."""

from planner_service.api.app import create_api, create_api_from_env
from planner_service.api.errors import ApiError

__all__ = ["create_api", "create_api_from_env", "ApiError"]
