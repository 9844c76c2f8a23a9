"""Property-based fuzzing of the HTTP API (hypothesis, fixed budget): whatever JSON, form or header
arrives -- arbitrary values, valid bodies with one field replaced by garbage, hostile text -- the
API answers with a status below 500 and hgq's JSON error shape, and keeps answering /healthz.
Real HTTP against a real API replica; the submissions that are valid really run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_api import ThreadServer, api_settings_for_tests

BUDGET = settings(max_examples=120, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TRIED: list[int] = []  # status codes seen, for the figure printed at the end

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates, controls, RTL ...
scalars = st.none() | st.booleans() | st.integers(min_value=-(10**80), max_value=10**80) | \
    st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
                           max_leaves=12)
tasks = st.fixed_dictionaries({"id": st.integers(-3, 5) | text, "task": st.sampled_from(
    ["diag-text", "image-to-image", "no-such", "summarization"]) | text},
    optional={"dep": st.lists(st.integers(-2, 6), max_size=3) | json_values,
              "args": st.dictionaries(st.sampled_from(["text", "image", "seconds", "style"]) | text,
                                      scalars, max_size=3)})
request_bodies = st.fixed_dictionaries(
    {"text": text | json_values},
    optional={"plan": st.lists(tasks, max_size=3) | json_values, "request_id": text | json_values,
              "conversation_id": text | json_values,
              "files": st.lists(st.fixed_dictionaries({}, optional={"data": text, "url": text, "name": text}),
                                max_size=2) | json_values})
chat_bodies = st.fixed_dictionaries(
    {"model": st.just("hgq") | text, "messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | text,
         "content": text | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]) | text},
                                                          optional={"text": text, "image_url": json_values}),
                                    max_size=2) | json_values}), max_size=3) | json_values},
    optional={"stream": st.booleans() | json_values, "hgq_plan": json_values})


@pytest.fixture(scope="module")
def fuzz_http(stack, settings) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    server = ThreadServer(create_api(settings, api_settings_for_tests(api_fetch_hosts=[]))).start()
    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create(f"fuzz-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        yield http
    server.stop()
    print(f"fuzz: {len(TRIED)} requests, {sum(s >= 500 for s in TRIED)} x 5xx")


def _check(r: httpx.Response) -> None:
    TRIED.append(r.status_code)
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"], r.text[:300]


def _raw(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    try:
        data = json.dumps(body, ensure_ascii=True).encode()  # lone surrogates travel as \\udXXX escapes
    except (TypeError, ValueError):
        data = b"{"
    return http.post(path, content=data, headers={"Content-Type": "application/json"})


@BUDGET
@given(body=request_bodies)
def test_requests_endpoint_never_5xx(fuzz_http: httpx.Client, body: dict[str, Any]) -> None:
    _check(_raw(fuzz_http, "/v1/requests", body))


@BUDGET
@given(body=chat_bodies)
def test_chat_endpoint_never_5xx(fuzz_http: httpx.Client, body: dict[str, Any]) -> None:
    body = {**body, "stream": False} if isinstance(body, dict) else body
    r = _raw(fuzz_http, "/v1/chat/completions", body)
    _check(r)


@BUDGET
@given(fields=st.dictionaries(st.sampled_from(["text", "plan", "request_id", "conversation_id", "junk"]),
                              st.text(max_size=60), max_size=4),
       upload=st.binary(max_size=64))
def test_multipart_never_5xx(fuzz_http: httpx.Client, fields: dict[str, str], upload: bytes) -> None:
    safe = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    _check(fuzz_http.post("/v1/requests", data=safe, files=[("files", ("f.bin", upload, "application/octet-stream"))]))


@BUDGET
@given(path=st.sampled_from(["/v1/requests/{}", "/v1/requests/{}/events", "/v1/requests/{}/artifacts/{}",
                             "/v1/models/{}", "/v1/requests"]),
       part=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_characters="/?#%"), max_size=30),
       query=st.dictionaries(st.sampled_from(["limit", "after", "x"]), st.text(max_size=10), max_size=2))
def test_reads_never_5xx(fuzz_http: httpx.Client, path: str, part: str, query: dict[str, str]) -> None:
    url = path.format(part or "x", part or "y")
    if url.endswith("/events"):
        with fuzz_http.stream("GET", url, params=query, timeout=5) as r:
            TRIED.append(r.status_code)
            assert r.status_code < 500
        return
    _check(fuzz_http.get(url, params=query))
