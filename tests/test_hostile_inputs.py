"""Hostile and broken input through real HTTP: each gets a 4xx JSON error naming the problem,
quickly, and never stalls other requests."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.test_api import ThreadServer, api_settings_for_tests


@pytest.fixture(scope="module")
def hostile_api(stack, settings) -> Iterator[ThreadServer]:  # type: ignore[no-untyped-def]
    from planner_service.api import create_api

    server = ThreadServer(create_api(settings, api_settings_for_tests(api_fetch_private=False,
                                                                      api_fetch_timeout_s=2.0))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(hostile_api: ThreadServer, settings) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    from planner_service.auth import ApiKeys
    from shared.redis_conn import text_redis

    key, _ = ApiKeys(text_redis(settings.redis_url), settings.key_prefix).create(f"hostile-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=hostile_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c


def _post_raw(http: httpx.Client, body: str, path: str = "/v1/requests") -> httpx.Response:
    return http.post(path, content=body.encode(), headers={"Content-Type": "application/json"})


def _refused(r: httpx.Response, *words: str) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    err = r.json()["error"]
    for w in words:
        assert w in err["message"], err["message"]
    return err


def test_deeply_nested_json_is_refused(http: httpx.Client) -> None:
    deep = "[" * 5000 + "]" * 5000
    _refused(_post_raw(http, f'{{"text": "x", "plan": {deep}}}'), "nested")
    _refused(_post_raw(http, deep), "nested")
    chat = f'{{"model": "hgq", "messages": [{{"role": "user", "content": {deep}}}]}}'
    _refused(_post_raw(http, chat, "/v1/chat/completions"), "nested")
    r = http.post("/v1/requests", data={"text": "x", "plan": deep})  # multipart
    _refused(r, "nested")


def test_huge_numbers_are_refused(http: httpx.Client) -> None:
    big = "9" * 5000
    _refused(_post_raw(http, f'{{"text": "x", "plan": [{{"id": {big}, "task": "diag-text"}}]}}'), "digits")
    plan = [{"id": 0, "task": "diag-text", "dep": [-1], "args": {"text": "a"}},
            {"id": 1, "task": "diag-text", "dep": [-1], "args": {"text": f"<GENERATED>-{big}"}}]
    _refused(http.post("/v1/requests", json={"text": "x", "plan": plan}), "cannot exist")


def test_unpaired_surrogates_are_refused(http: httpx.Client) -> None:
    _refused(_post_raw(http, '{"text": "hello \\ud800 world"}'), "surrogate")
    _refused(_post_raw(http, '{"text": "x", "plan": [{"id": 0, "task": "diag-\\udfff", "args": {}}]}'), "surrogate")
    chat = '{"model": "hgq", "messages": [{"role": "user", "content": "hi \\ud83d"}]}'
    _refused(_post_raw(http, chat, "/v1/chat/completions"), "surrogate")
    # a proper pair is fine text
    ok = _post_raw(http, '{"text": "a smile \\ud83d\\ude00", "plan": [{"id": 0, "task": "diag-text", '
                         '"args": {"text": "\\ud83d\\ude00"}}]}')
    assert ok.status_code == 202, ok.text


def test_a_plan_past_the_task_limit_is_refused(http: httpx.Client) -> None:
    plan = [{"id": i, "task": "diag-text", "dep": [-1], "args": {"text": "x"}} for i in range(10_000)]
    t0 = time.monotonic()
    _refused(http.post("/v1/requests", json={"text": "fan out", "plan": plan}), "at most 64 tasks")
    assert time.monotonic() - t0 < 10


@contextlib.contextmanager
def _health_probed(api: ThreadServer) -> Iterator[list[float]]:
    """/healthz asked 5 times (0.05 s apart) while the block runs: the seconds each answer took."""
    health: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=api.url, timeout=60) as c:
            for _ in range(5):
                t0 = time.monotonic()
                assert c.get("/healthz").status_code == 200
                health.append(time.monotonic() - t0)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        yield health
    finally:
        prober.join()


def test_thousands_of_unknown_keys_do_not_stall_other_requests(http: httpx.Client, hostile_api: ThreadServer) -> None:
    body = {"text": "x", **{f"k{i}": i for i in range(8000)}}
    t0 = time.monotonic()
    with _health_probed(hostile_api) as health:
        err = _refused(http.post("/v1/requests", json=body), "and 7950 more")
        took = time.monotonic() - t0
    assert len(err["details"]) == 50 and took < 10, took
    assert max(health) < 2.0, health


def test_chat_text_made_of_unclosed_tags_and_links_does_not_stall_the_api(http: httpx.Client, hostile_api: ThreadServer) -> None:
    """Chat messages have no length limit: 20,000 unclosed `<attached_files>` tags and 20,000
    `[a](http://` fragments took 25 s each of event-loop time with lazy regexes (every endpoint
    stalled); the blocks and links are found in linear time now."""
    from tests.helpers import diag

    tags, links = "<attached_files>" * 20_000, "[a](http://" * 20_000
    messages = [{"role": "user", "content": tags + " first"}, {"role": "assistant", "content": links},
                {"role": "user", "content": [{"type": "text", "text": tags}, {"type": "text", "text": "echo hi"}]}]
    t0 = time.monotonic()
    with _health_probed(hostile_api) as health:
        r = http.post("/v1/chat/completions", json={"model": "hgq", "messages": messages,
                                                    "hgq_plan": [diag(0, [], 0.0, text="hi")]}, timeout=120)
        took = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["hgq"]["status"] == "succeeded", r.text[:300]
    assert took < 15 and max(health) < 2.0, (took, health)


class _Dripper:
    """An allowed host that answers one byte per 0.5 s."""

    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "100")
                self.end_headers()
                try:
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_fetches_are_bounded_in_time_and_never_reach_inside(settings) -> None:  # type: ignore[no-untyped-def]
    from planner_service.api.errors import ApiError
    from planner_service.api.uploads import fetch_url

    drip = _Dripper()
    port = drip.server.server_address[1]
    private_ok = api_settings_for_tests(api_fetch_private=True, api_fetch_timeout_s=1.5)
    try:
        t0 = time.monotonic()
        with pytest.raises(ApiError, match="took longer than 1.5 s"):
            fetch_url(f"http://localhost:{port}/slow.png", None, "files[0]", private_ok)
        assert time.monotonic() - t0 < 4
    finally:
        drip.server.shutdown()
    strict = api_settings_for_tests(api_fetch_private=False)
    with pytest.raises(ApiError, match="internal address"):  # allow-listed by name, loopback by address
        fetch_url("http://localhost:9/a.png", None, "files[0]", strict)
    with pytest.raises(ApiError, match="whitespace or a control character"):
        fetch_url("http://local\thost/a.png", None, "files[0]", private_ok)


def test_line_separators_inside_events_survive_the_stream() -> None:
    """U+2028/U+2029/U+0085 inside an event's JSON stay escaped on the wire, and hgq's own client
    splits lines only where the SSE spec does."""
    import json

    from planner_service.api.sse import sse_frame
    from planner_service.cli_api import sse_lines

    text = "one\u2028two\u2029three\u0085four\x0bfive"
    frame = sse_frame({"type": "answer", "delta": text}, event="answer", eid="1-0")
    assert frame.count("\n") == 4 and "\u2028" not in frame  # id, event, data, blank line
    pieces = [frame.encode()[i:i + 7] for i in range(0, len(frame.encode()), 7)]  # split mid-line and mid-char
    lines = list(sse_lines(iter(pieces)))
    data = [line[6:] for line in lines if line.startswith("data: ")]
    assert json.loads("".join(data))["delta"] == text


def _raw_exchange(port: int, payload: bytes, timeout: float = 10) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(timeout)
        sock.sendall(payload)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return reply


@pytest.mark.parametrize("payload", [
    # a header over h11's 16 KiB limit (left unfinished, so the server has read all of it when it answers)
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 30_000,
    b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n{}",  # not a number
    b"POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",  # two lengths
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",  # broken request line
], ids=["huge-header", "bad-length", "two-lengths", "bad-request-line"])
def test_requests_uvicorn_cannot_parse_get_hgqs_json_error(hostile_api: ThreadServer, payload: bytes) -> None:
    import json

    reply = _raw_exchange(hostile_api.port, payload)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:200]
    assert b"content-type: application/json" in head.lower()
    err = json.loads(body)["error"]
    assert err["code"] == 400 and "malformed HTTP request" in err["message"]


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_open(settings) -> None:  # type: ignore[no-untyped-def]
    import json

    from planner_service.api import create_api

    app = create_api(settings, api_settings_for_tests())

    @app.get("/boom-for-test")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    server = ThreadServer(app).start()
    try:
        two = (b"GET /boom-for-test HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined on one keep-alive connection
        reply = _raw_exchange(server.port, two, timeout=3)
    finally:
        server.stop()
    first, _, rest = reply.partition(b"HTTP/1.1 200")
    assert first.startswith(b"HTTP/1.1 500"), reply[:300]
    body = json.loads(first.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == 500 and "secret" not in body["error"]["message"]
    assert b'{"status":"ok"}' in rest  # the second request was answered on the same connection
