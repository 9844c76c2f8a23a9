"""One POST in the Hugging Face inference protocol, for tasks InferenceClient has no method for."""

from __future__ import annotations

import json
from typing import Any

from workers.expert import Media


def target_url(model: str, task: str) -> str:
    """An endpoint URL as is; a repo id on Hugging Face's serverless inference (hf-inference)."""
    if model.startswith(("http://", "https://")):
        return model
    from huggingface_hub import constants

    return f"{constants.INFERENCE_PROXY_TEMPLATE.format(provider='hf-inference')}/models/{model}"


def post_raw(client: Any, task: str, media: Media) -> Any:
    """POST the raw bytes to the client's model; the JSON answer, or the bytes when not JSON."""
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    if not client.model:
        raise ValueError(f"{task}: no model or URL given")
    merged = {**build_hf_headers(token=client.token), "content-type": media.mime, **client.headers}
    headers = {name: value for name, value in merged.items() if value is not None}
    response = get_session().post(target_url(client.model, task), content=media.data, headers=headers,
                                  timeout=client.timeout)
    hf_raise_for_status(response)
    if "json" in response.headers.get("content-type", ""):
        return json.loads(response.content)
    return response.content
