"""Schemathesis against hgq's own OpenAPI schema (a fixed, derandomised budget that CI runs): every
operation the schema documents gets generated requests -- ones that fit the schema and ones that
break it on purpose -- over real HTTP with a key. No answer is a 5xx, each has a content type the
schema allows, errors have hgq's JSON error shape, and none takes long. tests/test_fuzz_api.py
fuzzes the same API with hypothesis strategies of its own; this one follows what the schema says.

(Schemathesis' pytest plugin does not run on pytest 9 here: the operations are driven from
hypothesis directly, one `given` per operation and generation mode.)"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance  # noqa: E402

from tests.test_api import ThreadServer, api_settings_for_tests  # noqa: E402

EXAMPLES = 15  # per operation and mode (12 operations, 2 modes); negative cases include a missing key


@pytest.fixture(scope="module")
def live_api(stack, settings) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    server = ThreadServer(create_api(settings, api_settings_for_tests(api_chat_timeout_s=5))).start()
    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create(f"st-{uuid.uuid4().hex[:6]}")
    yield {"url": server.url, "key": key}
    server.stop()


def test_every_documented_operation_answers_without_a_server_error(live_api: dict[str, Any]) -> None:
    import httpx

    url, headers = live_api["url"], {"Authorization": f"Bearer {live_api['key']}"}
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10  # the schema documents the API (requests, chat, artifacts, service)
    seen: Counter[int] = Counter()
    no_negative: list[str] = []
    slowest = 0.0

    for operation in operations:
        for mode in schemathesis.GenerationMode:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                nonlocal slowest
                started = time.monotonic()
                own = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
                response = case.call(base_url=url, headers={**own, **headers}, timeout=30)
                slowest = max(slowest, time.monotonic() - started)
                seen[response.status_code] += 1
                case.validate_response(response, checks=[not_a_server_error, content_type_conformance])
                if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                    assert isinstance(response.json().get("error"), dict), response.text  # hgq's error shape

            try:
                check()
            except Unsatisfiable:  # an operation with no parameter has nothing to break
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
                no_negative.append(operation.label)
    print(f"schemathesis: {sum(seen.values())} requests over {len(operations)} operations, by status "
          f"{dict(sorted(seen.items()))}, slowest {slowest:.2f}s; nothing to break in {len(no_negative)}")
    assert not [code for code in seen if code >= 500] and slowest < 30
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # still answering
