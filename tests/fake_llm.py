"""A scripted OpenAI-compatible HTTP server: deterministic LLM replies for tests and benchmarks.

Replies are chosen by the `X-HGQ-Stage` header hgq sends (plan, select, respond, task): a test
queues replies per stage; with none queued, a stage falls back to a deterministic default.
Every request is recorded so tests can count calls per stage.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = str | dict[str, Any] | Callable[[dict[str, Any]], str]


def _default(stage: str, body: dict[str, Any]) -> str:
    last = body["messages"][-1]["content"]
    if stage == "respond":
        return f"ANSWER for: {last[:2000]}"
    if stage == "task":
        return f"LLM[{last.split(chr(10))[-1][:500]}]"
    if stage == "select":
        return json.dumps({"choices": []})
    return json.dumps({"tasks": []})


class FakeLLM:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.delay_s: dict[str, float] = {}
        self.status: dict[str, int] = {}  # stage -> HTTP status to answer (e.g. 500)
        # stage -> (seconds before the first token, seconds per token) of a streamed reply: a fake
        # with real latency (LLMCompiler-style measurements use 0.4 s + 0.01 s per token)
        self.latency: dict[str, tuple[float, float]] = {}
        self.aborted: list[str] = []  # stages whose stream the client closed before its end
        self.finished: list[str] = []  # stages whose stream was sent to the end
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, content: str, body: dict[str, Any], stage: str) -> None:
                """Server-Sent Events chunks, one per word, like an OpenAI streaming response."""
                try:
                    self._stream_words(content, body, fake.latency.get(stage, (0.0, 0.0)))
                except (BrokenPipeError, ConnectionResetError):
                    with fake._lock:
                        fake.aborted.append(stage)
                    return
                with fake._lock:
                    fake.finished.append(stage)

            def _stream_words(self, content: str, body: dict[str, Any], latency: tuple[float, float]) -> None:
                first_s, per_token_s = latency
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": body.get("model", "fake-llm")}
                words = content.split(" ")
                if first_s:
                    time.sleep(first_s)
                for i, word in enumerate(words):
                    if per_token_s and i:
                        time.sleep(per_token_s)
                    piece = word if i == len(words) - 1 else word + " "
                    chunk = {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                             "completion_tokens": len(words), "total_tokens": 0}
                    self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-llm", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                stage = self.headers.get("X-HGQ-Stage", "unknown")
                content, code = fake._reply(stage, body)
                if code != 200:
                    self._send(code, {"error": {"message": f"scripted failure {code}: {content}",
                                                "type": "server_error"}})
                    return
                if body.get("stream"):
                    self._stream(content, body, stage)
                    return
                self._send(200, {
                    "id": f"chatcmpl-{len(fake.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "fake-llm"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
                              "completion_tokens": len(content.split()),
                              "total_tokens": 0},
                })

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _reply(self, stage: str, body: dict[str, Any]) -> tuple[str, int]:
        with self._lock:
            self.requests.append((stage, body))
            queued = self._scripts[stage].popleft() if self._scripts[stage] else None
            delay = self.delay_s.get(stage, 0.0)
            code = self.status.get(stage, 200)
        if delay:
            time.sleep(delay)
        if queued is None:
            return _default(stage, body), code
        if callable(queued):
            return queued(body), code
        return (queued if isinstance(queued, str) else json.dumps(queued)), code

    def script(self, stage: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[stage].extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.delay_s.clear()
            self.status.clear()
            self.latency.clear()
            self.aborted.clear()
            self.finished.clear()

    def calls(self, stage: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for s, body in self.requests if s == stage]

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":  # run standalone: python -m tests.fake_llm PORT
    import sys

    server = FakeLLM(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(server.url, flush=True)
    threading.Event().wait()
