"""HTTP clients whose requests end by a deadline, however slowly the server answers.

httpx's timeouts bound each network operation: a server that sends one byte
every few seconds never trips a 10 s read timeout, and a request to it never
ends (the agent's sender stopped delivering without a log line; the optimizer's
refit held its lock forever). :func:`deadline_client` gives every request a
deadline for the whole exchange (connect, send, headers and body): each
socket operation waits at most until then, and one past it raises httpx's
``ReadTimeout`` (or ``ConnectTimeout``/``WriteTimeout``), which callers already
handle as a timeout.

:func:`deadline` narrows the deadline of every request made inside it (the
agent's flush on stop must end within its own budget).
"""

from __future__ import annotations

import ssl
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import httpcore
import httpx

from wattwise.errors import ConfigError

_deadline: ContextVar[float | None] = ContextVar("wattwise_http_deadline", default=None)

TimeoutKind = type[httpcore.TimeoutException]


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Requests made inside end by ``at`` (on :func:`time.monotonic`), or earlier if an
    enclosing deadline or their own says so."""
    current = _deadline.get()
    token = _deadline.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        _deadline.reset(token)


def _bounded(timeout: float | None, kind: TimeoutKind) -> float | None:
    """``timeout`` shortened to what is left before the deadline; raise ``kind`` if none is."""
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise kind("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineBody(httpx.SyncByteStream):
    """A response body read under the deadline of the request it answers."""

    def __init__(self, inner: httpx.SyncByteStream, at: float) -> None:
        self._inner = inner
        self._at = at

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with deadline(self._at):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport, on a network backend that honours each request's deadline."""

    def __init__(self, *, total_s: float, verify: ssl.SSLContext | bool = True) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else None
        super().__init__(verify=verify)
        self.total_s = total_s
        self._pool = httpcore.ConnectionPool(
            ssl_context=context or httpx.create_ssl_context(verify=verify),
            network_backend=_DeadlineBackend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic() + self.total_s
        with deadline(at):
            response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_DeadlineBody(response.stream, at),
            extensions=response.extensions,
        )


def deadline_client(
    base_url: str,
    *,
    timeout_s: float,
    total_s: float,
    verify: ssl.SSLContext | bool = True,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` whose every request ends within ``total_s`` (each network
    operation also within ``timeout_s``)."""
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        auth=auth,
        timeout=timeout_s,
        transport=DeadlineTransport(total_s=total_s, verify=verify),
    )


def tls_verify(ca_file: Path | None, insecure: bool) -> ssl.SSLContext | bool:
    """What httpx verifies a server's certificate with, from a command's ``--ca-file`` and
    ``--insecure`` (the two together are refused)."""
    if insecure:
        if ca_file is not None:
            raise ConfigError("--insecure", True, "not given together with --ca-file")
        return False
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("--ca-file", str(ca_file), f"a readable PEM file ({e})") from e
