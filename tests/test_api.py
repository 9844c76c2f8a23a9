"""The HTTP API over real HTTP: a uvicorn server (thread or subprocess) in front of the real stack."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from planner_service.api.http_protocol import JsonErrorH11Protocol
from tests.helpers import diag
from tests.media import shapes_image

FINAL = {"succeeded", "failed", "cancelled"}


# --- servers and users -------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """A real uvicorn server for an app, in a thread of the test process."""

    def __init__(self, app: Any, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", http=JsonErrorH11Protocol))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def api_settings_for_tests(**over: Any) -> Any:
    from shared.settings import Settings

    base: dict[str, Any] = {"api_sse_block_ms": 300, "api_rate_per_minute": 10_000, "api_max_concurrent": 100,
                                "api_max_upload_bytes": 300_000, "api_max_uploads": 3, "api_fetch_hosts": ["localhost"], "api_fetch_private": True,
                                "api_sse_ping_s": 1.0, "api_chat_timeout_s": 60}
    base.update(over)
    return Settings(**base)


@pytest.fixture(scope="module")
def api(stack, settings) -> Iterator[ThreadServer]:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api

    server = ThreadServer(create_api(settings, api_settings_for_tests())).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def users(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """user name -> API key (fresh users per module, so limits start from zero)."""
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    keys = ApiKeys(text_redis(settings.redis_url), settings.key_prefix)
    tag = uuid.uuid4().hex[:6]
    out = {}
    for name, rpm, conc in (("alice", None, None), ("bob", None, None), ("limited", 3, None), ("single", None, 1)):
        key, _ = keys.create(f"{name}-{tag}", rpm=rpm, max_concurrent=conc)
        out[name] = key
    return out


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def alice(api: ThreadServer, users: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers=auth(users["alice"]), timeout=60) as c:
        yield c


@pytest.fixture
def bob(api: ThreadServer, users: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers=auth(users["bob"]), timeout=60) as c:
        yield c


def wait_final(http: httpx.Client, rid: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.get(f"/v1/requests/{rid}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in FINAL:
            return r.json()
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)


def sse(http: httpx.Client, path: str, headers: dict[str, str] | None = None,
        stop: Any = None, timeout_s: float = 60) -> list[tuple[str, str, dict[str, Any]]]:
    """Read an SSE stream: [(id, event, data)] until the server ends it or `stop(event)` is true."""
    events: list[tuple[str, str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    with http.stream("GET", path, headers=headers or {}) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        eid = event = ""
        data: list[str] = []
        for line in resp.iter_lines():
            assert time.monotonic() < deadline, f"{path}: stream not over after {timeout_s}s: {events}"
            if line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                events.append((eid, event, json.loads("\n".join(data))))
                eid, event, data = "", "", []
                if stop is not None and stop(events[-1]):
                    break
    return events


def submit(http: httpx.Client, plan: list[dict[str, Any]], text: str = "api request", **kw: Any) -> str:
    r = http.post("/v1/requests", json={"text": text, "plan": plan, **kw})
    assert r.status_code == 202, r.text
    return str(r.json()["request_id"])


def image_bytes() -> bytes:
    media, _ = shapes_image(160, 120, fmt="PNG")
    return media.data


# --- requests ----------------------------------------------------------------------------------
def test_submit_answers_202_at_once_then_status_is_the_run(alice: httpx.Client, client) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    r = alice.post("/v1/requests", json={"text": "two steps", "plan": [diag(0, [], 0.5, text="a"),
                                                                       diag(1, [0], 0.1, text="<GENERATED>-0")]})
    took = time.monotonic() - t0
    assert r.status_code == 202, r.text
    body = r.json()
    rid = body["request_id"]
    assert took < 0.5, f"submission took {took:.2f}s: work done in the handler?"
    assert body["status_url"] == f"/v1/requests/{rid}" and body["events_url"] == f"/v1/requests/{rid}/events"
    assert r.headers["location"] == body["status_url"]
    early = alice.get(body["status_url"]).json()
    assert early["status"] not in FINAL
    run = wait_final(alice, rid)
    assert run["status"] == "succeeded" and run["response"].startswith("ANSWER")
    assert run["tasks"]["1"]["output"]["text"] == "n1(n0(a))"
    assert run["tasks"]["0"]["started_at"] and run["tasks"]["0"]["finished_at"] and run["tasks"]["0"]["model"]
    assert run["usage"]["respond"]["calls"] == 1
    assert run == json.loads(client.view(rid).model_dump_json())  # the same object as `hgq ask --json`


def test_history_lists_only_the_callers_requests(alice: httpx.Client, bob: httpx.Client) -> None:
    rid = submit(alice, [diag(0, [], 0.0)], text="alice's history item")
    wait_final(alice, rid)
    mine = alice.get("/v1/requests").json()["data"]
    assert any(x["request_id"] == rid and x["request"] == "alice's history item" for x in mine)
    assert all(x["request_id"] != rid for x in bob.get("/v1/requests").json()["data"])


def test_request_id_is_idempotent_and_not_shared(alice: httpx.Client, bob: httpx.Client) -> None:
    rid = uuid.uuid4().hex
    assert submit(alice, [diag(0, [], 0.1)], request_id=rid) == rid
    assert submit(alice, [diag(0, [], 0.1)], request_id=rid) == rid
    r = bob.post("/v1/requests", json={"text": "x", "plan": [diag(0, [])], "request_id": rid})
    assert r.status_code == 409 and r.json()["error"]["field"] == "request_id"
    assert wait_final(alice, rid)["tasks"]["0"]["attempts"] == 1


def test_events_stream_resumes_from_last_event_id(alice: httpx.Client) -> None:
    rid = submit(alice, [diag(0, [], 0.4), diag(1, [0], 0.4, text="<GENERATED>-0"),
                         diag(2, [1], 0.4, text="<GENERATED>-1")])
    first = sse(alice, f"/v1/requests/{rid}/events",
                stop=lambda e: e[1] == "task" and e[2]["node"] == 0 and e[2]["status"] == "succeeded")
    assert first[0][1] == "accepted" and first[-1][2]["status"] == "succeeded"
    time.sleep(0.6)  # events happen while we are away
    rest = sse(alice, f"/v1/requests/{rid}/events", headers={"Last-Event-ID": first[-1][0]})
    assert rest[-1][1] == "done" and rest[-1][2]["status"] == "succeeded"
    full = sse(alice, f"/v1/requests/{rid}/events")  # late client: everything from the start, then the end
    ids = [e[0] for e in first + rest]
    assert ids == [e[0] for e in full], "reconnecting lost or repeated events"
    assert len(set(ids)) == len(ids)
    statuses = [(e[2]["node"], e[2]["status"]) for e in full if e[1] == "task"]
    for node in (0, 1, 2):
        assert [s for n, s in statuses if n == node][-2:] == ["running", "succeeded"]
    assert {e[1] for e in full} >= {"accepted", "planned", "task", "done"}
    # ?after= does the same for clients that cannot set headers; a resume after `done` ends at once
    assert [e[0] for e in sse(alice, f"/v1/requests/{rid}/events?after={first[-1][0]}")] == [e[0] for e in rest]
    assert sse(alice, f"/v1/requests/{rid}/events", headers={"Last-Event-ID": full[-1][0]}) == []


def test_cancel(alice: httpx.Client) -> None:
    rid = submit(alice, [diag(0, [], 1.0), diag(1, [0], 0.1, text="<GENERATED>-0")])
    sse(alice, f"/v1/requests/{rid}/events", stop=lambda e: e[1] == "task" and e[2]["status"] == "running")
    r = alice.delete(f"/v1/requests/{rid}")
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    run = wait_final(alice, rid)
    assert run["status"] == "cancelled" and run["tasks"]["1"]["status"] == "cancelled"
    assert alice.delete(f"/v1/requests/{rid}").json()["status"] == "cancelled"


# --- users ---------------------------------------------------------------------------------------
def test_keys_are_required_and_another_users_ids_are_404(api: ThreadServer, alice: httpx.Client,
                                                         bob: httpx.Client, settings) -> None:  # type: ignore[no-untyped-def]
    anon = httpx.Client(base_url=api.url)
    r = anon.post("/v1/requests", json={"text": "x"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["field"] == "Authorization"
    assert anon.get("/v1/requests/abcdef", headers=auth("hgq_00000000_" + "x" * 40)).status_code == 401
    rid = submit(alice, [diag(0, [], 0.1)])
    for path in (f"/v1/requests/{rid}", f"/v1/requests/{rid}/events", "/v1/requests/doesnotexist"):
        r = bob.get(path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", path
    assert bob.delete(f"/v1/requests/{rid}").status_code == 404
    assert wait_final(alice, rid)["status"] == "succeeded"
    # keys are stored hashed, and a revoked key stops working
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    r_ = text_redis(settings.redis_url)
    keys = ApiKeys(r_, settings.key_prefix)
    key, info = keys.create("revoked-user")
    dump = {k: r_.dump(k) for k in r_.scan_iter(f"{settings.key_prefix}:api*")}
    assert not any(key.encode() in (v or b"") for v in dump.values()), "a plaintext key is stored"
    assert anon.get("/v1/models", headers=auth(key)).status_code == 200
    assert [i.key_id for i in keys.revoke(info.key_id)] == [info.key_id]
    assert anon.get("/v1/models", headers=auth(key)).status_code == 401


def test_rate_limit_answers_429_with_retry_after(api: ThreadServer, users: dict[str, str]) -> None:
    with httpx.Client(base_url=api.url, headers=auth(users["limited"])) as c:
        codes = [c.post("/v1/requests", json={"text": "x", "plan": [diag(0, [])]}) for _ in range(4)]
    assert [r.status_code for r in codes] == [202, 202, 202, 429]
    retry = int(codes[3].headers["retry-after"])
    assert 1 <= retry <= 60
    assert codes[3].json()["error"]["type"] == "rate_limit_error"


def test_concurrent_runs_limit(api: ThreadServer, users: dict[str, str]) -> None:
    with httpx.Client(base_url=api.url, headers=auth(users["single"]), timeout=30) as c:
        first = submit(c, [diag(0, [], 0.8)])
        r = c.post("/v1/requests", json={"text": "x", "plan": [diag(0, [])]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "in flight" in r.json()["error"]["message"]
        wait_final(c, first)
        submit(c, [diag(0, [])])  # a slot is free again


# --- uploads and artifacts -------------------------------------------------------------------------
def test_multipart_upload_runs_and_artifacts_belong_to_the_user(alice: httpx.Client, bob: httpx.Client) -> None:
    img = image_bytes()
    plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "photo.png", "style": "gray"}}]
    r = alice.post("/v1/requests", data={"text": "make photo.png gray", "plan": json.dumps(plan)},
                   files=[("files", ("../../etc/photo.png", img, "application/octet-stream"))])
    assert r.status_code == 202, r.text
    run = wait_final(alice, r.json()["request_id"])
    assert run["status"] == "succeeded", run
    art = run["artifacts"][0]
    assert art["mime"] == "image/png" and art["kind"] == "image"
    got = alice.get(f"/v1/artifacts/{art['id']}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content[:4] == b"\x89PNG"
    assert bob.get(f"/v1/artifacts/{art['id']}").status_code == 404
    import hashlib

    upload_id = hashlib.sha256(img).hexdigest()
    assert alice.get(f"/v1/artifacts/{upload_id}").content == img  # her own upload
    assert bob.get(f"/v1/artifacts/{upload_id}").status_code == 404
    assert alice.get("/v1/artifacts/../../etc/passwd").status_code == 404
    assert alice.get("/v1/artifacts/" + "0" * 64).status_code == 404


def test_conversations_are_per_user_and_reach_earlier_files(alice: httpx.Client, bob: httpx.Client,
                                                             fake_llm) -> None:  # type: ignore[no-untyped-def]
    conv = "trip-" + uuid.uuid4().hex[:8]
    plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "photo.png", "style": "gray"}}]
    r = alice.post("/v1/requests", data={"text": "gray please", "plan": json.dumps(plan), "conversation_id": conv},
                   files=[("files", ("photo.png", image_bytes(), "image/png"))])
    assert r.status_code == 202, r.text
    first = wait_final(alice, r.json()["request_id"])
    art = first["artifacts"][0]
    name = f"task0-{art['id'][:12]}.png"  # the name the answer gives a generated file
    again = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": name, "style": "sketch"}}]
    rid = submit(alice, again, text="now sketch that one", conversation_id=conv)
    assert wait_final(alice, rid)["status"] == "succeeded"
    assert {x["conversation_id"] for x in alice.get("/v1/requests?limit=2").json()["data"]} == {conv}
    r = bob.post("/v1/requests", json={"text": "x", "plan": again, "conversation_id": conv})
    assert r.status_code == 422 and r.json()["error"]["field"] == "plan"  # bob's "trip" is his own, empty
    assert "(uploads: none)" in r.json()["error"]["message"]
    # without a plan, the planner sees the earlier turns and their files
    r = alice.post("/v1/requests", json={"text": "and what about before?", "conversation_id": conv})
    assert r.status_code == 202, r.text
    wait_final(alice, r.json()["request_id"])
    prompt = json.dumps(fake_llm.calls("plan")[-1]["messages"])
    assert "now sketch that one" in prompt and name in prompt


def test_upload_type_is_checked_from_content_not_name(alice: httpx.Client) -> None:
    def post(name: str, data: bytes) -> httpx.Response:
        return alice.post("/v1/requests", data={"text": "look at this"}, files=[("files", (name, data, "image/png"))])

    r = post("evil.png", b"#!/bin/sh\nrm -rf /\n" * 4)
    assert r.status_code == 415 and r.json()["error"]["field"] == "files[0]"
    r = post("song.wav", b"<html>not audio</html>")
    assert r.status_code == 415 and "unsupported file type" in r.json()["error"]["message"]
    assert post("notes.txt", image_bytes()).status_code == 202  # a PNG is a PNG whatever its name


def test_upload_size_and_count_limits(alice: httpx.Client) -> None:
    big = image_bytes() + b"\0" * 300_001
    r = alice.post("/v1/requests", data={"text": "x"}, files=[("files", ("big.png", big, "image/png"))])
    assert r.status_code == 413 and r.json()["error"]["field"] == "files[0]"
    img = image_bytes()
    r = alice.post("/v1/requests", data={"text": "x"},
                   files=[("files", (f"{i}.png", img, "image/png")) for i in range(4)])
    assert r.status_code == 413 and r.json()["error"]["field"] == "files"


class _ImageHost:
    """A local HTTP server that serves one PNG (the allow-listed host 'localhost')."""

    def __init__(self, data: bytes):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.hits = 0
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


def test_urls_are_fetched_only_from_allowed_hosts(alice: httpx.Client) -> None:
    host = _ImageHost(image_bytes())
    try:
        for url in (f"http://127.0.0.1:{host.port}/a.png", "http://169.254.169.254/latest/meta-data",
                    "file:///etc/passwd", "ftp://localhost/x.png"):
            r = alice.post("/v1/requests", json={"text": "x", "files": [{"url": url}]})
            assert r.status_code == 400 and r.json()["error"]["field"] == "files[0]", (url, r.text)
        plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "a.png", "style": "gray"}}]
        r = alice.post("/v1/requests", json={"text": "x", "plan": plan,
                                             "files": [{"url": f"http://localhost:{host.port}/a.png"}]})
        assert r.status_code == 202, r.text
        assert wait_final(alice, r.json()["request_id"])["status"] == "succeeded"
    finally:
        host.server.shutdown()


def test_server_paths_are_never_read(alice: httpx.Client) -> None:
    plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "/etc/passwd"}}]
    r = alice.post("/v1/requests", json={"text": "x", "plan": plan})
    assert r.status_code == 422 and r.json()["error"]["field"] == "plan"
    assert "neither an uploaded file" in r.json()["error"]["message"]


# --- malformed input ------------------------------------------------------------------------------
@pytest.mark.parametrize("body, status, field", [
    (b'{"text": "x",', 400, "body"),
    (b'{"plan": []}', 422, "text"),
    (b'{"text": ""}', 422, "text"),
    (b'{"text": "x", "plan": [{"id": "zero", "task": "diag-text"}]}', 422, "plan[0].id"),
    (b'{"text": "x", "plan": [{"id": 0, "task": "make-coffee"}]}', 422, "plan"),
    (b'{"text": "x", "request_id": "../etc"}', 422, "request_id"),
    (b'{"text": "x", "colour": "red"}', 422, "colour"),
    (b'{"text": "x", "files": [{"data": "%%%"}]}', 400, "files[0].data"),
    (b'[1, 2]', 422, "body"),
])
def test_malformed_requests_name_the_field(alice: httpx.Client, body: bytes, status: int, field: str) -> None:
    r = alice.post("/v1/requests", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"], err


def test_other_malformed_inputs(alice: httpx.Client) -> None:
    r = alice.post("/v1/requests", content=b"text=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["field"] == "Content-Type"
    r = alice.post("/v1/requests", data={"text": "x", "plan": "[{"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "plan"
    r = alice.post("/v1/requests", data={"plan": "[]"}, files=[("files", ("a.png", image_bytes(), "image/png"))])
    assert r.status_code == 422 and r.json()["error"]["field"] == "text"
    rid = submit(alice, [diag(0, [])])
    r = alice.get(f"/v1/requests/{rid}/events", headers={"Last-Event-ID": "yesterday"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "Last-Event-ID"
    r = alice.post("/v1/chat/completions", json={"model": "hgq"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "messages"
    r = alice.post("/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["field"] == "model"
    r = alice.post("/v1/chat/completions", json={"model": "hgq", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "messages[0].content[0].image_url.url"
    r = alice.post("/v1/chat/completions", json={"model": "hgq", "messages": [
        {"role": "user", "content": [{"type": "video", "video": {}}]}]})
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("messages[0].content")


# --- OpenAI-compatible ------------------------------------------------------------------------------
def _image_message(text: str) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(image_bytes()).decode()
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        {"type": "image_url", "image_url": {"url": url}}]}


GRAY_PLAN = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "image1.png", "style": "gray"}},
             {"id": 1, "task": "diag-text", "dep": [-1], "args": {"text": "hello", "seconds": 0.2}}]


def test_chat_completion_with_an_image_part(api: ThreadServer, users: dict[str, str], fake_llm) -> None:  # type: ignore[no-untyped-def]
    from openai import OpenAI

    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    assert [m.id for m in oai.models.list()] == ["hgq"]
    res = oai.chat.completions.create(model="hgq", messages=[_image_message("make it gray")],  # type: ignore[list-item]
                                      extra_body={"hgq_plan": GRAY_PLAN})
    assert res.object == "chat.completion" and res.choices[0].finish_reason == "stop"
    assert res.choices[0].message.content.startswith("ANSWER")
    extra = res.model_extra["hgq"]  # type: ignore[index]
    assert extra["status"] == "succeeded" and extra["artifacts"][0]["mime"] == "image/png"
    assert res.usage is not None and res.usage.total_tokens > 0
    # planned by the LLM: the upload is offered to the planner by name, the earlier turns as context
    res = oai.chat.completions.create(model="hgq", messages=[  # type: ignore[list-item]
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, _image_message("what is in this picture?")])
    assert res.choices[0].message.content.startswith("ANSWER")
    first, repair = fake_llm.calls("plan")[-2:]
    prompt = first["messages"][-1]["content"]
    assert "[files: image1.png (image)]" in prompt and "assistant: hello" in prompt
    # the scripted planner ignored the picture: the one repair round says so
    assert "image1.png is not used by any task" in repair["messages"][-1]["content"]


def test_open_webuis_attached_files_block_names_the_image_and_is_not_the_request(api: ThreadServer, users: dict[str, str], fake_llm) -> None:  # type: ignore[no-untyped-def]
    """Open WebUI 0.12 puts an <attached_files> block before the user's words: the image takes
    the name it lists, and the block stays out of the request (and of later turns' context)."""
    from openai import OpenAI

    block = ('<attached_files>\n<file type="file" id="4b28" url="4b28" content_type="image/png" '
             'name="my shop/sign.png"/>\n</attached_files>\n\n')
    msg = _image_message("Turn the attached picture into a pencil sketch")
    msg["content"].insert(0, {"type": "text", "text": block})
    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    plan = [{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "sign.png", "style": "gray"}}]
    res = oai.chat.completions.create(model="hgq", messages=[msg], extra_body={"hgq_plan": plan})  # type: ignore[list-item]
    extra = res.model_extra["hgq"]  # type: ignore[index]
    assert extra["status"] == "succeeded" and extra["artifacts"][0]["mime"] == "image/png"
    with httpx.Client(base_url=api.url, headers=auth(users["alice"])) as c:
        run = c.get(f"/v1/requests/{extra['request_id']}").json()
    assert run["request"] == "Turn the attached picture into a pencil sketch"
    # a second turn: the block of the first is not in the context the planner reads
    oai.chat.completions.create(model="hgq", messages=[  # type: ignore[list-item]
        msg, {"role": "assistant", "content": "Here it is."}, {"role": "user", "content": "now make it smaller"}])
    prompt = next(c["messages"][-1]["content"] for c in reversed(fake_llm.calls("plan"))
                  if "now make it smaller" in c["messages"][-1]["content"])  # not the repair round's
    assert "<attached_files" not in prompt and "sign.png (image)" in prompt
    # the earlier answer as the UI sends it back, with hgq's signed link: the planner sees the label only
    answer = res.choices[0].message.content or ""
    assert "/v1/artifacts/" in answer and "sig=" in answer
    oai.chat.completions.create(model="hgq", messages=[  # type: ignore[list-item]
        msg, {"role": "assistant", "content": answer}, {"role": "user", "content": "and a smaller one"}])
    prompt = next(c["messages"][-1]["content"] for c in reversed(fake_llm.calls("plan"))
                  if "and a smaller one" in c["messages"][-1]["content"])
    assert "/v1/artifacts/" not in prompt and "[image from task 0]" in prompt


def test_chat_completion_stream(api: ThreadServer, users: dict[str, str]) -> None:
    from openai import OpenAI

    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    stream = oai.chat.completions.create(model="hgq", messages=[_image_message("gray please")],  # type: ignore[list-item]
                                         stream=True, stream_options={"include_usage": True},
                                         extra_body={"hgq_plan": GRAY_PLAN})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"] and chunks[-1].usage is not None and chunks[-1].choices == []
    rid = chunks[0].id.removeprefix("chatcmpl-")
    with httpx.Client(base_url=api.url, headers=auth(users["alice"])) as c:
        run = c.get(f"/v1/requests/{rid}").json()
    assert run["status"] == "succeeded" and len(chunks) >= 4
    answer, _, files = text.partition("\n\n![image from task 0](")
    assert answer == run["response"] and files  # the gray picture, inline after the answer
    _fetch_signed_image(files.split(")", 1)[0])


def _fetch_signed_image(url: str) -> None:
    """A signed artifact URL works with no Authorization header (a browser <img>); a changed or
    expired one does not."""
    assert url.startswith("http://127.0.0.1:") and "/v1/artifacts/" in url and "sig=" in url
    img = httpx.get(url)
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(img.content)).mode in ("L", "LA")  # gray, as asked
    base, _, query = url.partition("?")
    exp, sig = (p.split("=", 1)[1] for p in query.split("&"))
    forged = httpx.get(base, params={"exp": exp, "sig": ("0" if sig[0] != "0" else "1") + sig[1:]})
    assert forged.status_code == 403 and "invalid or has expired" in forged.json()["error"]["message"]
    later = httpx.get(base, params={"exp": str(int(exp) + 3600), "sig": sig})  # a longer life is not signed
    assert later.status_code == 403
    assert httpx.get(base, params={"exp": "1000", "sig": sig}).status_code == 403  # long expired
    assert httpx.get(base).status_code == 401  # no signature: the owner's key is needed as before


def test_chat_completion_raw_sse_ends_with_done(alice: httpx.Client) -> None:
    body = {"model": "hgq", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "hgq_plan": [diag(0, [], 0.1, text="x")]}
    with alice.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = [ln for ln in resp.iter_lines() if ln]
    data = [ln[6:] for ln in lines if ln.startswith("data: ")]
    assert data[-1] == "[DONE]"
    progress = "".join(json.loads(d)["choices"][0]["delta"].get("reasoning_content") or ""
                       for d in data[:-1] if json.loads(d)["choices"])
    # progress as reasoning_content (what reasoning-aware chat UIs show while they wait)
    assert "Plan: 1 task (0 diag-text)" in progress and "Task 0 diag-text started with hgq/diag-text" in progress
    assert re.search(r"Task 0 diag-text done in \d+\.\d s", progress), progress
    assert json.loads(data[-2])["choices"][0]["finish_reason"] == "stop"


# --- service ------------------------------------------------------------------------------------------
def test_health_ready_and_capabilities(alice: httpx.Client, api: ThreadServer, settings) -> None:  # type: ignore[no-untyped-def]
    assert alice.get("/healthz").json() == {"status": "ok"}
    r = alice.get("/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True, "redis": True,
                                                 "pools": {"text": True, "vision": True, "audio": True, "llm": True}}
    caps = alice.get("/v1/capabilities").json()
    assert caps["tasks"]["diag-vision"]["pool"] == "vision"
    assert caps["tasks"]["diag-text"]["models"][0]["model_id"] == "hgq/diag-text"
    assert all(caps["pools"][p] > 0 for p in ("text", "vision", "audio", "llm"))
    assert alice.get("/openapi.json").json()["paths"]["/v1/requests"]["post"]
    from planner_service.api import create_api

    lonely = ThreadServer(create_api(settings.model_copy(update={"key_prefix": "nobody-" + uuid.uuid4().hex[:6]}),
                                     api_settings_for_tests())).start()
    try:
        r = httpx.get(f"{lonely.url}/readyz")
        assert r.status_code == 503 and r.json()["pools"]["text"] is False
    finally:
        lonely.stop()


def test_a_killed_replica_loses_nothing(stack, hgq_env, users: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.cli_api import api_command_line

    ports = [free_port(), free_port()]
    env = {**os.environ, **hgq_env, "HGQ_API_SSE_BLOCK_MS": "300", "HGQ_API_SSE_PING_S": "1"}
    procs = [subprocess.Popen(api_command_line("127.0.0.1", p), env=env, stdout=open(tmp_path / f"api{i}.log", "wb"),  # noqa: SIM115 (the replica holds it until killed)
                              stderr=subprocess.STDOUT, start_new_session=True) for i, p in enumerate(ports)]
    try:
        for p in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{p}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "api0.log").read_text()
                time.sleep(0.1)
        a = httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", headers=auth(users["alice"]), timeout=30)
        b = httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", headers=auth(users["alice"]), timeout=30)
        rid = submit(a, [diag(0, [], 0.6), diag(1, [0], 0.6, text="<GENERATED>-0"),
                         diag(2, [1], 0.6, text="<GENERATED>-1")])
        seen = sse(a, f"/v1/requests/{rid}/events", stop=lambda e: e[1] == "task" and e[2]["status"] == "running")
        os.killpg(procs[0].pid, signal.SIGKILL)  # replica A dies mid-request
        procs[0].wait(timeout=10)
        with pytest.raises(httpx.TransportError):
            a.get(f"/v1/requests/{rid}")
        status = b.get(f"/v1/requests/{rid}").json()
        assert status["request_id"] == rid and status["status"] not in FINAL
        rest = sse(b, f"/v1/requests/{rid}/events", headers={"Last-Event-ID": seen[-1][0]}, timeout_s=30)
        assert rest and rest[-1][1] == "done", b.get(f"/v1/requests/{rid}").text
        assert rest[-1][1] == "done" and rest[-1][2]["status"] == "succeeded"
        full = sse(b, f"/v1/requests/{rid}/events")
        assert [e[0] for e in seen + rest] == [e[0] for e in full]
        assert b.get(f"/v1/requests/{rid}").json()["tasks"]["2"]["output"]["text"] == "n2(n1(n0()))"
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)


def test_keys_cli(hgq_env) -> None:  # type: ignore[no-untyped-def]
    import sys

    cmd = [sys.executable, "-m", "planner_service.cli_api", "keys"]
    env = {**os.environ, **hgq_env}
    made = subprocess.run([*cmd, "create", "carol"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("hgq_") and "carol" in made.stderr
    listed = subprocess.run([*cmd, "list"], env=env, capture_output=True, text=True, timeout=60)
    key_id = key.split("_")[1]
    assert key_id in listed.stdout and key not in listed.stdout
    gone = subprocess.run([*cmd, "revoke", key_id], env=env, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0 and f"revoked {key_id}" in gone.stdout
    bad = subprocess.run([*cmd, "create", "no spaces please"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "user name" in bad.stderr


def test_ask_through_the_api_prints_progress_and_the_same_run(api: ThreadServer, users: dict[str, str],
                                                              tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from planner_service.cli_api import ask_via_api
    from shared.errors import HgqError, PlanError
    from shared.plan import parse_plan_json

    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes())
    plan = parse_plan_json([{"id": 0, "task": "image-to-image", "dep": [-1], "args": {"image": "photo.png"}},
                            diag(1, [-1], 0.2, pool="audio", text="x")])
    view = ask_via_api(api.url, users["alice"], "gray it", [photo], plan, output_dir=tmp_path / "out")
    err = capsys.readouterr().err
    assert view.status == "succeeded" and view.response.startswith("ANSWER")
    assert "planned 2 task(s)" in err and "[1] diag-audio running on audio-" in err and "done succeeded" in err
    saved = Path(view.artifacts[0].path)
    assert saved.read_bytes()[:4] == b"\x89PNG" and saved.name == f"task0-{view.artifacts[0].id[:12]}.png"
    with pytest.raises(PlanError, match="make-coffee"):
        ask_via_api(api.url, users["alice"], "x", [], parse_plan_json([{"id": 0, "task": "make-coffee"}]))
    with pytest.raises(HgqError, match="401.*Authorization"):
        ask_via_api(api.url, "hgq_00000000_" + "x" * 40, "x", [], None)


def test_start_api_process_beside_a_stack(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from planner_service.cli_api import start_api_process
    from planner_service.stack import Stack

    said: list[str] = []
    stack = Stack(settings, say=said.append, log_dir=tmp_path)
    try:
        url = start_api_process(stack, host="127.0.0.1", port=free_port())
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{url}/").text.startswith("<!doctype html>")
        assert httpx.get(f"{url}/web/app.js").headers["content-type"].startswith("text/javascript")
        assert any("api: http://127.0.0.1" in m for m in said)
    finally:
        stack.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz")


def test_oversized_bodies_are_refused_before_they_are_read(api: ThreadServer, users: dict[str, str]) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", api.port)) as sock:  # claims 1 GB, sends nothing more
        sock.sendall(b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + users["alice"].encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
        sock.settimeout(10)
        reply = ""
        while "}}" not in reply:
            chunk = sock.recv(4096).decode()
            assert chunk, reply
            reply += chunk
    assert reply.startswith("HTTP/1.1 413") and '"field":"body"' in reply and "nosniff" in reply


def test_docs_work_offline_and_declare_the_bearer_scheme(api: ThreadServer) -> None:
    page = httpx.get(f"{api.url}/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn.jsdelivr.net" not in page.text and "unpkg.com" not in page.text  # nothing from the internet
    js = httpx.get(f"{api.url}/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert httpx.get(f"{api.url}/docs-assets/swagger-ui.css").status_code == 200
    spec = httpx.get(f"{api.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    post = spec["paths"]["/v1/requests"]["post"]
    assert post.get("security"), "POST /v1/requests does not declare its bearer auth"
    # every route that takes a body documents it (the chat body too, read by hand with hgq's JSON limits)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in ("post", "put", "patch"):
                assert op.get("requestBody"), f"{method.upper()} {path} does not document its body"
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat == {"$ref": "#/components/schemas/ChatIn"}
    assert {"model", "messages", "stream"} <= set(spec["components"]["schemas"]["ChatIn"]["properties"])


def test_a_model_can_be_retrieved_by_id_with_the_openai_client(api: ThreadServer, users: dict[str, str]) -> None:
    import openai
    from openai import OpenAI

    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    assert oai.models.retrieve("hgq").id == "hgq"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-17")


def test_a_weak_url_secret_is_refused_and_an_unset_one_is_shared_through_redis(settings) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr, ValidationError

    from planner_service.api.signed_urls import UrlSigner
    from shared.redis_conn import text_redis
    from shared.settings import Settings

    with pytest.raises(ValidationError, match="HGQ_API_URL_SECRET"):
        Settings(api_url_secret="changeme")
    r = text_redis(settings.redis_url)
    prefix = "signer-" + uuid.uuid4().hex[:6]
    try:
        one, two = UrlSigner(settings, r, prefix), UrlSigner(settings, r, prefix)  # two API replicas
        query = one.query("a" * 64)
        exp, sig = (p.split("=", 1)[1] for p in query.split("&"))
        assert two.valid("a" * 64, exp, sig) and not two.valid("b" * 64, exp, sig)
        other = UrlSigner(settings.model_copy(update={"api_url_secret": SecretStr("x" * 32)}), r, prefix)
        assert not other.valid("a" * 64, exp, sig)  # a configured secret replaces the stored one
    finally:
        r.delete(f"{prefix}:url-secret")


OPEN_WEBUI_TITLE = ("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
                    "### Output:\nJSON format: { \"title\": \"your concise title here\" }\n"
                    "### Chat History:\n<chat_history>\nUSER: transcribe my meeting recording please\n"
                    "ASSISTANT: Here is the transcript...\n</chat_history>")


def test_a_chat_uis_side_prompt_is_one_llm_call_and_no_run(api: ThreadServer, users: dict[str, str], fake_llm) -> None:  # type: ignore[no-untyped-def]
    """Open WebUI's title prompt must not become a planned run that counts against the user's limits."""
    from openai import OpenAI

    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    with httpx.Client(base_url=api.url, headers=auth(users["alice"])) as c:
        before = c.get("/v1/requests").json()
        plans_before = len(fake_llm.calls("plan"))
        fake_llm.script("side", '{"title": "🎙️ Meeting transcript"}')
        res = oai.chat.completions.create(model="hgq", messages=[{"role": "user", "content": OPEN_WEBUI_TITLE}])
        assert res.choices[0].message.content == '{"title": "🎙️ Meeting transcript"}'
        assert res.model_extra["hgq"] == {"side_prompt": "title"}  # type: ignore[index]
        # streamed, with the LLM saying nothing useful: a well-formed title from the conversation
        fake_llm.script("side", "")
        chunks = list(oai.chat.completions.create(model="hgq", stream=True,
                                                  messages=[{"role": "user", "content": OPEN_WEBUI_TITLE}]))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert json.loads(text) == {"title": "transcribe my meeting recording please"}
        assert c.get("/v1/requests").json() == before  # no run in the history
    assert len(fake_llm.calls("plan")) == plans_before and len(fake_llm.calls("side")) == 2
    # an ordinary request that mentions a title is still a run
    res = oai.chat.completions.create(model="hgq", messages=[{"role": "user", "content": "suggest a title for my essay"}])
    assert res.model_extra["hgq"]["request_id"]  # type: ignore[index]


def test_the_history_tells_chat_endpoint_runs_from_api_runs(api: ThreadServer, users: dict[str, str]) -> None:
    from openai import OpenAI

    oai = OpenAI(base_url=f"{api.url}/v1", api_key=users["alice"], max_retries=0)
    chat = oai.chat.completions.create(model="hgq", messages=[{"role": "user", "content": "hello from a chat UI"}],
                                       extra_body={"hgq_plan": [diag(0, [], 0.0, text="x")]})
    chat_id = chat.model_extra["hgq"]["request_id"]  # type: ignore[index]
    with httpx.Client(base_url=api.url, headers=auth(users["alice"])) as c:
        r = c.post("/v1/requests", json={"text": "hello from a script", "plan": [diag(0, [], 0.0, text="y")]})
        api_id = r.json()["request_id"]
        items = {i["request_id"]: i for i in c.get("/v1/requests").json()["data"]}
    assert items[chat_id]["source"] == "chat" and items[api_id]["source"] == "api"
