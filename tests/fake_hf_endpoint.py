"""A scriptable HTTP server speaking the Hugging Face inference protocol (what TGI, Inference
Endpoints and HF's serverless API answer), for tests of remote inference.

`huggingface_hub.InferenceClient(model=URL)` POSTs to the URL itself: JSON {"inputs": ...,
"parameters": ...} for text tasks, the raw bytes for image and audio tasks (and `/v1/chat/completions`
appended for chat). Paths here are `/<task>/<name>`: with nothing scripted a path answers like HF
for its task; a test can queue steps per path (status, body, delay) -- e.g. 503, 503, then the
default -- and count the requests each path saw.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Step:
    """One scripted reply: status, body (JSON-able, or bytes), a delay before answering."""

    status: int = 200
    body: Any = None  # None: the task's default reply
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def png(width: int = 8, height: int = 6, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def _default_reply(task: str, seen: Seen) -> Any:
    """What HF's inference API answers for a task (the shapes huggingface_hub parses)."""
    text_in = ""
    if seen.headers.get("content-type", "").startswith("application/json"):
        payload = seen.json()
        text_in = payload.get("inputs") if isinstance(payload.get("inputs"), str) else ""
    if task == "text-classification":
        return [[{"label": "POSITIVE", "score": 0.91}, {"label": "NEGATIVE", "score": 0.09}]]
    if task == "zero-shot-classification":
        labels = seen.json()["parameters"]["candidate_labels"]
        return [{"label": lab, "score": round(1 / (i + 2), 3)} for i, lab in enumerate(labels)]
    if task == "token-classification":
        return [{"entity_group": "PER", "score": 0.99, "word": "Maria", "start": 0, "end": 5}]
    if task == "summarization":
        return [{"summary_text": f"summary of: {text_in[:30]}"}]
    if task == "translation":
        return [{"translation_text": f"traduit: {text_in}"}]
    if task == "question-answering":
        return {"answer": "Paris", "score": 0.8, "start": 0, "end": 5}
    if task == "sentence-similarity":
        return [0.75]
    if task == "text-generation":
        return [{"generated_text": f"{text_in} and then some"}]
    if task in ("image-classification", "audio-classification"):
        return [{"label": "tabby cat", "score": 0.82}, {"label": "tiger cat", "score": 0.11}]
    if task == "object-detection":
        return [{"label": "cat", "score": 0.97, "box": {"xmin": 1, "ymin": 1, "xmax": 5, "ymax": 4}}]
    if task == "image-segmentation":
        return [{"label": "cat", "score": 0.9, "mask": base64.b64encode(png(8, 6, (255, 255, 255))).decode()}]
    if task == "image-to-text":
        return [{"generated_text": "a cat on a sofa"}]
    if task in ("visual-question-answering", "document-question-answering"):
        return [{"answer": "two", "score": 0.7}]
    if task == "depth-estimation":
        return {"depth": base64.b64encode(png(8, 6, (90, 90, 90))).decode(), "predicted_depth": [[1.0]]}
    if task in ("text-to-image", "image-to-image"):
        return png(16, 16, (10, 120, 200))
    if task == "automatic-speech-recognition":
        return {"text": "hello world"}
    if task == "text-to-speech":
        return b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)
    return {"error": f"the fake endpoint knows no task '{task}'"}


class FakeHFEndpoint:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._scripts: dict[str, deque[Step]] = defaultdict(deque)
        self._sticky: dict[str, Step] = {}  # path -> the reply once the script is used up
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path = self.path.split("?", 1)[0]
                seen = Seen(path=path, headers={k.lower(): v for k, v in self.headers.items()}, body=body)
                step = fake._next(seen)
                if step.delay_s:
                    time.sleep(step.delay_s)
                if path.endswith("/v1/chat/completions"):
                    content = f"chat reply to: {seen.json()['messages'][-1]['content']}"
                    reply = step.body if step.body is not None else {
                        "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}]}
                else:
                    task = path.strip("/").split("/")[0]
                    reply = step.body if step.body is not None else (
                        _default_reply(task, seen) if step.status == 200 else {"error": f"scripted {step.status}"})
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                try:
                    self.send_response(step.status)
                    self.send_header("Content-Type", "application/octet-stream" if isinstance(reply, bytes)
                                     else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in step.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, task: str, name: str) -> str:
        return f"{self.base_url}/{task}/{name}"

    def _next(self, seen: Seen) -> Step:
        with self._lock:
            self.requests.append(seen)
            queue = self._scripts.get(seen.path)
            return queue.popleft() if queue else self._sticky.get(seen.path, Step())

    def script(self, url_or_path: str, *steps: Step) -> None:
        """Queue replies for a path; once they are used up the path answers normally."""
        path = url_or_path.removeprefix(self.base_url)
        with self._lock:
            self._scripts[path].extend(steps)

    def always(self, url_or_path: str, step: Step) -> None:
        """Answer a path with this step every time (after any scripted steps)."""
        with self._lock:
            self._sticky[url_or_path.removeprefix(self.base_url)] = step

    def calls(self, url_or_path: str) -> list[Seen]:
        path = url_or_path.removeprefix(self.base_url)
        with self._lock:
            return [s for s in self.requests if s.path == path]

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._sticky.clear()
            self.requests.clear()

    def start(self) -> FakeHFEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
