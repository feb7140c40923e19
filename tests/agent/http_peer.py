"""A real HTTP server on localhost that answers from a script and records every request.

For what influxd 1.6.7 cannot show (``/api/v2/write``, ``503`` with
``Retry-After``, TLS with client certificates): a genuine HTTP peer on a real
socket, so the transport's httpx client, headers and gzip are exercised end to end.
"""

from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def lines(self) -> list[bytes]:
        raw = (
            gzip.decompress(self.body)
            if self.headers.get("content-encoding") == "gzip"
            else self.body
        )
        return raw.split(b"\n")


@dataclass
class HttpPeer:
    url: str
    answers: list[Answer]
    requests: list[Request]


@contextmanager
def http_peer(answers: list[Answer], *, tls: ssl.SSLContext | None = None) -> Iterator[HttpPeer]:
    """Serve ``answers`` in order (the last one repeats) on a free localhost port."""
    requests: list[Request] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.do_POST()

        def do_DELETE(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                requests.append(
                    Request(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                answer = answers[min(len(requests), len(answers)) - 1]
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield HttpPeer(f"{scheme}://127.0.0.1:{server.server_address[1]}", answers, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
