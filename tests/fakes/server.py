"""A provider-neutral fake model server over real HTTP.

A test scripts *what* the model answers with ``Reply`` objects (or a function of the request);
a ``WireProtocol`` decides *how* that answer looks on the wire (OpenAI Responses, Chat
Completions, Anthropic Messages), plain or as server-sent events. The same scenario can
therefore run against every provider through its official SDK.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


@dataclass
class Reply:
    """One scripted answer.

    ``status`` other than 200 sends an error body; ``raw`` sends those bytes verbatim (a
    malformed body); ``delay`` sleeps before answering (timeouts, slow models).
    """

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 10
    output_tokens: int = 5


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


class WireProtocol(Protocol):
    paths: tuple[str, ...]

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]: ...

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]: ...

    def render_error(self, reply: Reply) -> dict[str, Any]: ...


Responder = Callable[[Recorded], Reply]


class FakeServer:
    """Serve scripted replies on 127.0.0.1 at a free port; records every request.

    ``replies`` is either a list consumed in order (the last one repeats) or a function of
    the recorded request.
    """

    def __init__(self, protocol: WireProtocol, replies: list[Reply] | Responder) -> None:
        self.protocol = protocol
        self.requests: list[Recorded] = []
        self._replies = replies
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            if callable(self._replies):
                return self._replies(request)
            if len(self._replies) > 1:
                return self._replies.pop(0)
            return self._replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Without this, Nagle's algorithm delays small responses by ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                if not any(path.endswith(p) for p in server.protocol.paths):
                    self._send(404, {"error": {"message": f"no route {path}"}})
                    return
                recorded = Recorded(path, dict(self.headers.items()), body)
                reply = server.next_reply(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    self._send_bytes(reply.status, reply.raw, "application/json", reply.headers)
                elif reply.status != 200:
                    self._send(reply.status, server.protocol.render_error(reply), reply.headers)
                elif recorded.stream:
                    self._send_stream(server.protocol.render_stream(reply, recorded))
                else:
                    self._send(200, server.protocol.render(reply, recorded), reply.headers)

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                self._send_bytes(
                    status, json.dumps(payload).encode(), "application/json", headers or {}
                )

            def _send_bytes(
                self, status: int, data: bytes, ctype: str, headers: dict[str, str]
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

            def _send_stream(self, chunks: Iterator[bytes]) -> None:
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for chunk in chunks:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    """One server-sent event, encoded."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
