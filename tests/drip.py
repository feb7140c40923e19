"""A real HTTP server on localhost that answers one byte at a time, forever.

Every byte arrives well within any read timeout, so only a deadline for the
whole request ends a request to it. It reads each request whole first, so the
client is waiting for the answer (or for the rest of a streamed answer) when
the dripping starts.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class DripServer:
    url: str
    requests: list[bytes] = field(default_factory=list)
    """The head of every request, as received."""


@contextmanager
def drip_server(
    interval_s: float = 0.5, *, head: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"
) -> Iterator[DripServer]:
    """Answer every request with ``head`` and then an endless body, one byte per
    ``interval_s`` (the head itself is dripped too)."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = DripServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    workers: list[threading.Thread] = []

    def drip(conn: socket.socket) -> None:
        with conn:
            received = b""
            while b"\r\n\r\n" not in received and not stop.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                received += chunk
            server.requests.append(received.split(b"\r\n\r\n")[0])
            answer = head + b"x" * 99999
            for i in range(len(answer)):
                if stop.wait(interval_s):
                    return
                try:
                    conn.sendall(answer[i : i + 1])
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            worker = threading.Thread(target=drip, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join(5)
        for worker in workers:
            worker.join(5)
        listener.close()
