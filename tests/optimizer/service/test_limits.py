"""What a client may send and how slowly, over real sockets to a live uvicorn."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.optimizer.service.support import EXTENDER_TOKEN, READ_TOKEN, serve
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.limits import deadline_protocol

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def limited(engine: Engine) -> Iterator[str]:
    """The API with a 64 KiB body cap and a 1 s deadline for each request to arrive whole."""
    config = engine.config.model_copy(
        update={"api": engine.config.api.model_copy(update={"max_body_bytes": MAX_BODY})}
    )
    engine.refresh()
    with serve(create_app(engine, config), http=deadline_protocol(1.0)) as url:
        yield url


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.settimeout(60)  # a hang guard: the server must answer or close long before
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def head(path: str, length: int, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_unauthenticated_body_is_refused_before_any_of_it_is_read(limited: str) -> None:
    # An unauthenticated 100 MB body was parsed before its 401: peak RSS 6.6 GB.
    with connect(limited) as sock:
        sock.sendall(head("/v1/extender/filter", MAX_BODY - 1) + b'{"Pod": ')
        reply = sock.recv(65536)  # the 401 comes while most of the body was never sent
    assert reply.startswith(b"HTTP/1.1 401")


def test_body_declared_over_the_cap_is_413_without_reading_it(limited: str) -> None:
    with connect(limited) as sock:
        sock.sendall(head("/v1/extender/filter", 100 * 1024 * 1024, EXTENDER_TOKEN) + b"{")
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 413")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"] == "too large"


def test_chunked_body_growing_past_the_cap_is_413(limited: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"Pod": {}, "NodeNames": ["'
        for _ in range(200):
            yield b"n" * 1024
        yield b'"]}'

    headers = {"Authorization": f"Bearer {EXTENDER_TOKEN}", "Content-Type": "application/json"}
    response = httpx.post(f"{limited}/v1/extender/filter", headers=headers, content=chunks())
    assert response.status_code == 413 and response.json()["error"] == "too large"


def test_client_dripping_its_headers_gets_408_and_the_connection_closed(limited: str) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{limited}/healthz").status_code == 200


def test_client_dripping_its_body_is_cut_off_and_the_server_goes_on(
    limited: str, caplog: pytest.LogCaptureFixture
) -> None:
    with connect(limited) as sock:
        sock.sendall(head("/v1/placement", 1000, READ_TOKEN) + b'{"gpus": ')
        reply = answer(sock)  # the rest of the body never comes
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    assert httpx.get(f"{limited}/healthz").status_code == 200
    assert "Traceback" not in caplog.text


def test_connection_that_never_sends_a_request_is_closed(limited: str) -> None:
    with connect(limited) as sock:
        assert answer(sock).startswith(b"HTTP/1.1 408")
