"""uvicorn's HTTP/1.1 protocol with hgq's JSON error format for requests it cannot parse.

A request that never reaches the app (a header over h11's size limit, a bad Content-Length, a
malformed request line) gets uvicorn's plain-text "Invalid HTTP request received."; this
protocol answers it with the same `{"error": {...}}` body as every other hgq error. Pass it to uvicorn as `http=JsonErrorH11Protocol`.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from planner_service.api.errors import error_body

_CAUSES = "a bad request line, a header over the size limit, or an invalid Content-Length or Transfer-Encoding"


class JsonErrorH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body(400, "malformed HTTP request (" + _CAUSES + "); uvicorn: " + msg,
                                     "invalid_request_error", None)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # h11 may refuse to answer at all in this state: just close
            pass
        self.transport.close()
