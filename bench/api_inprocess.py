"""What one API request costs inside the process, with no network and no other client.

Requests go straight to the ASGI app (the same app the server runs, middleware
included); a placement is also timed as a bare ``recommend_placement`` call on
the same request, interleaved with the endpoint's, so the endpoint's overhead
is the difference of two medians taken side by side. Used by api_latency.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.service.engine import Engine

Request = tuple[str, str, bytes]
"""Method, path with query string, body."""


class AsgiCaller:
    """Sends one request at a time to an ASGI app and returns its status."""

    def __init__(self, app: Any, authorization: str) -> None:
        self.app = app
        self.headers = [(b"authorization", authorization.encode()), (b"host", b"bench")]

    async def __call__(self, method: str, target: str, body: bytes = b"") -> int:
        path, _, query = target.partition("?")
        headers = list(self.headers)
        if body:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = [0]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])

        await self.app(scope, receive, send)
        return status[0]


def time_requests(call: AsgiCaller, requests: Sequence[Request], n: int) -> list[float]:
    """Seconds per request, cycling through ``requests`` (after one warm-up round)."""

    async def run() -> list[float]:
        for request in requests[:50]:
            await call(*request)
        took = []
        for i in range(n):
            request = requests[i % len(requests)]
            started = time.perf_counter()
            status = await call(*request)
            took.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{request[1]}: {status}")
        return took

    return asyncio.run(run())


def placement_overhead(
    call: AsgiCaller, engine: Engine, bodies: Sequence[bytes], n: int
) -> tuple[list[float], list[float]]:
    """Seconds per placement through the endpoint and as a bare call, interleaved."""
    snapshot, fitted, settings = engine.snapshot, engine.fitted, engine.config.placement

    async def run() -> tuple[list[float], list[float]]:
        endpoint, bare = [], []
        for i in range(n):
            body = bodies[i % len(bodies)]
            request = PlacementRequest(**json.loads(body))
            started = time.perf_counter()
            recommend_placement(request, snapshot.fleet, settings, fitted.profiles, explain=False)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            status = await call("POST", "/v1/placement", body)
            endpoint.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"placement {body!r}: {status}")
        return endpoint, bare

    return asyncio.run(run())


def summary_us(took: Sequence[float]) -> tuple[float, float]:
    """Median and p99 in microseconds."""
    ordered = sorted(took)
    return statistics.median(ordered) * 1e6, ordered[int(0.99 * (len(ordered) - 1))] * 1e6
