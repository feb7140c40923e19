"""A real HTTP proxy in front of influxd that answers some requests with a fault of its own.

``script(n)`` is asked for each request (numbered from 0): an :class:`Answer` is sent
instead of forwarding; None forwards the request to influxd and returns its answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.agent.http_peer import Answer

Script = Callable[[int], Answer | None]
FORWARDED_HEADERS = ("content-type", "content-encoding", "authorization")


@contextmanager
def fault_proxy(target: str, script: Script) -> Iterator[str]:
    count = [0]
    lock = threading.Lock()
    client = httpx.Client(base_url=target, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                n = count[0]
                count[0] += 1
            answer = script(n)
            if answer is None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_HEADERS}
                real = client.post(self.path, content=body, headers=headers)
                answer = Answer(real.status_code, {}, real.content)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        client.close()
