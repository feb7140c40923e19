"""The optimizer's own Prometheus metrics, in a registry of its own (never the global one).

Requests are labelled by route template (``/v1/extender/k/{token}/filter``),
never by raw path, so neither path tokens nor random paths become labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "wattwise_api_requests", "API requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "wattwise_api_request_seconds",
            "time to answer an API request",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.jobs = Counter(
            "wattwise_optimizer_jobs", "refits and refreshes run", ["job", "result"], registry=r
        )
        self.last_success = Gauge(
            "wattwise_optimizer_last_success_timestamp_seconds",
            "when each job last succeeded",
            ["job"],
            registry=r,
        )
        self.recommendations = Gauge(
            "wattwise_optimizer_recommendations", "recommendations served", ["kind"], registry=r
        )
        self.gc_pauses = Histogram(
            "wattwise_api_gc_pause_seconds",
            "garbage-collector passes (every thread waits for them)",
            ["generation"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.webhooks = Counter(
            "wattwise_webhook_deliveries", "webhook deliveries", ["result"], registry=r
        )

    def watch_dropped(self, dropped: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Export the telemetry values the engine dropped as impossible, read at each scrape."""
        self.registry.register(_DroppedValues(dropped))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _DroppedValues(Collector):
    def __init__(self, dropped: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._dropped = dropped

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "wattwise_optimizer_dropped_values",
            "telemetry values dropped as physically impossible",
            labels=["measurement", "field"],
        )
        for (measurement, field), count in sorted(self._dropped().items()):
            family.add_metric([measurement, field], count)
        yield family


class RequestMetrics:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_of(scope)
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
