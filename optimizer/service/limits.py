"""What a client may send, and how slowly: a cap on request bodies and a deadline for
receiving each request.

An unauthenticated 100 MB JSON body to the extender was parsed before its 401 (peak
RSS 6.6 GB, far past the unit's MemoryMax), and a client sending a byte at a time
held its connection forever. :class:`BodyLimit` answers 413 to a body declared
larger than ``api.max_body_bytes`` before reading any of it, and stops reading one
that grows past it; :func:`deadline_protocol` gives uvicorn's protocol a deadline
for receiving a whole request (headers and body), answering 408 and closing the
connection when it passes. Authentication happens before any body is read: the
endpoints that take one read it themselves, after their token dependency.
"""

from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BodyLimit:
    """Pure ASGI middleware refusing request bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, "too large", self._detail(f"declares {declared}"))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._detail(f"sent more than {self.max_bytes}"))
            return message

        await self.app(scope, limited, send)

    def _detail(self, what: str) -> str:
        return f"the request body {what} bytes; at most {self.max_bytes} are accepted"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _answer(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_TIMED_OUT = json.dumps(
    {"error": "request timeout", "detail": "the request did not arrive whole in time"}
).encode()
_TIMED_OUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMED_OUT)).encode() + b"\r\n\r\n" + _TIMED_OUT
)


def deadline_protocol(request_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request (headers and body)
    has not arrived whole ``request_timeout_s`` after it began (or after the connection
    opened). Idle keep-alive connections are uvicorn's own ``timeout_keep_alive``."""

    class DeadlineProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._request_deadline: asyncio.TimerHandle | None = None
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._request_deadline = self.loop.call_later(request_timeout_s, self._expired)

        def _disarm(self) -> None:
            handle = getattr(self, "_request_deadline", None)
            if handle is not None:
                handle.cancel()
                self._request_deadline = None

        def _expired(self) -> None:
            self._request_deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                # No application is answering this request yet: the server answers it.
                self.transport.write(_TIMED_OUT_RESPONSE)
            self.transport.close()

    return DeadlineProtocol
