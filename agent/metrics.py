"""The agent's self-metrics: the ``agent`` measurement, and an optional /metrics endpoint.

:class:`SelfMetricsSource` is a source like any other, scheduled at the host
interval, so self-metrics travel through the same WAL as the samples they
describe. :class:`PrometheusCollector` exposes the same numbers for scraping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from wattwise.agent.loop import TickStats
from wattwise.clock import Clock
from wattwise.collector.base import Reading


class QueueStats(Protocol):
    @property
    def queue_lines(self) -> int: ...
    @property
    def queue_bytes(self) -> int: ...
    @property
    def dropped_lines_total(self) -> int: ...
    @property
    def skipped_bytes_total(self) -> int: ...


class DeliveryStats(Protocol):
    @property
    def sent_lines_total(self) -> int: ...
    @property
    def retried_batches_total(self) -> int: ...
    @property
    def dead_lettered_lines_total(self) -> int: ...
    @property
    def sender_errors_total(self) -> int: ...
    @property
    def rejecting_all(self) -> bool: ...


@dataclass(frozen=True)
class Snapshot:
    """The agent's numbers at one moment."""

    queue_lines: int
    queue_bytes: int
    sent_lines_total: int
    retried_batches_total: int
    dropped_lines_total: int
    dead_lettered_lines_total: int
    tick_duration_s: float
    tick_overruns_total: int
    source_errors_total: int
    encode_errors_total: int = 0
    wal_skipped_bytes_total: int = 0
    sender_errors_total: int = 0
    sender_up: int = 1
    store_rejecting_all: int = 0


class StatsProvider:
    """Gathers one :class:`Snapshot` from the loop, the WAL and the sender."""

    def __init__(
        self,
        tick_stats: Callable[[], TickStats],
        queue_stats: Callable[[], QueueStats],
        delivery_stats: Callable[[], DeliveryStats],
        sender_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self._tick = tick_stats
        self._queue = queue_stats
        self._delivery = delivery_stats
        self._sender_up = sender_up

    def snapshot(self) -> Snapshot:
        tick, queue, delivery = self._tick(), self._queue(), self._delivery()
        return Snapshot(
            queue_lines=queue.queue_lines,
            queue_bytes=queue.queue_bytes,
            sent_lines_total=delivery.sent_lines_total,
            retried_batches_total=delivery.retried_batches_total,
            dropped_lines_total=queue.dropped_lines_total,
            dead_lettered_lines_total=delivery.dead_lettered_lines_total,
            tick_duration_s=tick.last_tick_duration_s,
            tick_overruns_total=tick.tick_overruns_total,
            source_errors_total=tick.source_errors_total,
            encode_errors_total=tick.encode_errors_total,
            wal_skipped_bytes_total=queue.skipped_bytes_total,
            sender_errors_total=delivery.sender_errors_total,
            sender_up=int(self._sender_up()),
            store_rejecting_all=int(delivery.rejecting_all),
        )


class SelfMetricsSource:
    """Yields the ``agent`` measurement; scheduled like the other sources."""

    name = "agent"

    def __init__(self, stats: StatsProvider, *, host: str, clock: Clock) -> None:
        self._stats = stats
        self._host = host
        self._clock = clock

    def read(self) -> Sequence[Reading]:
        s = self._stats.snapshot()
        fields: dict[str, float | int | None] = {
            "queue_lines": s.queue_lines,
            "queue_bytes": s.queue_bytes,
            "sent_lines_total": s.sent_lines_total,
            "retried_batches_total": s.retried_batches_total,
            "dropped_lines_total": s.dropped_lines_total,
            "dead_lettered_lines_total": s.dead_lettered_lines_total,
            "tick_duration_s": s.tick_duration_s,
            "tick_overruns_total": s.tick_overruns_total,
            "source_errors_total": s.source_errors_total,
            "encode_errors_total": s.encode_errors_total,
            "wal_skipped_bytes_total": s.wal_skipped_bytes_total,
            "sender_errors_total": s.sender_errors_total,
            "sender_up": s.sender_up,
            "store_rejecting_all": s.store_rejecting_all,
        }
        return [Reading("agent", {"host": self._host}, fields, self._clock.time_ns())]

    def close(self) -> None:
        pass


_COUNTERS = {
    "sent_lines": "lines delivered to the store",
    "retried_batches": "delivery attempts that were retried",
    "dropped_lines": "lines dropped: write-ahead log full, disk full or damaged records",
    "dead_lettered_lines": "lines the store rejected, kept in the dead-letter file",
    "tick_overruns": "ticks that took longer than the interval",
    "source_errors": "failed source or device reads",
    "encode_errors": "readings that could not be encoded as line protocol",
    "wal_skipped_bytes": "damaged write-ahead log bytes stepped over",
    "sender_errors": "unexpected errors the sender outlived",
}
_GAUGES = {
    "queue_lines": "lines in the write-ahead log not yet delivered",
    "queue_bytes": "bytes in the write-ahead log not yet delivered",
    "tick_duration_s": "duration of the last tick",
    "sender_up": "1 while the sender thread runs",
    "store_rejecting_all": "1 while the store refuses every line and data is held",
}


class PrometheusCollector(Collector):
    """Exposes the same numbers as the ``agent`` measurement as ``wattwise_agent_*``."""

    def __init__(self, stats: StatsProvider) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._stats.snapshot()
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(
                f"wattwise_agent_{name}", doc, value=getattr(s, f"{name}_total")
            )
        for name, doc in _GAUGES.items():
            yield GaugeMetricFamily(f"wattwise_agent_{name}", doc, value=getattr(s, name))
