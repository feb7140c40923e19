"""The tick loop: read each source when it is due, encode, append to the WAL.

Sources run at their own intervals (GPUs every second, host and BMC every ten
by default). A source that fails is counted and logged, and the others keep
being read; a reading that cannot be encoded is counted and logged (once a
minute per kind of problem), never allowed to stop the loop; lines the WAL
cannot take (a full disk) are counted there. Delivery is the sender's job, on
its own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wattwise.agent.throttle import LogThrottle
from wattwise.clock import Clock
from wattwise.collector.base import Reading, Source
from wattwise.errors import EncodeError, SourceError

log = logging.getLogger(__name__)


class LineSink(Protocol):
    """Where encoded lines go: the write-ahead log."""

    def append(self, lines: Sequence[bytes]) -> bool:
        """True when the lines were written; False when they were dropped (and counted)."""
        ...


@dataclass
class Schedule:
    """A source and how often it is read; ``next_due`` is on the monotonic clock."""

    source: Source
    interval_s: float
    next_due: float = 0.0


@dataclass
class TickStats:
    """What the loop itself did; the ``agent`` measurement reports it."""

    ticks_total: int = 0
    readings_total: int = 0
    lines_total: int = 0
    tick_overruns_total: int = 0
    source_errors_total: int = 0
    encode_errors_total: int = 0
    last_tick_duration_s: float = 0.0
    failing_sources: dict[str, str] = field(default_factory=dict)


class TickLoop:
    """Reads due sources, stamps node labels onto their readings, appends lines to the sink."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        sink: LineSink,
        *,
        clock: Clock,
        encode: Callable[[Reading], bytes | None],
        labels: Mapping[str, str] | None = None,
        extra_readings: Callable[[], Sequence[Reading]] | None = None,
        observe: Callable[[Sequence[Reading]], None] | None = None,
    ) -> None:
        """``observe`` sees each tick's readings with the node's labels on them."""
        self.schedules = list(schedules)
        self.sink = sink
        self.clock = clock
        self.encode = encode
        self.labels = {k: v for k, v in (labels or {}).items() if v}
        self.extra_readings = extra_readings
        self.observe = observe
        self.stats = TickStats()
        self._throttle = LogThrottle(clock)
        now = clock.monotonic()
        for schedule in self.schedules:
            schedule.next_due = now

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set."""
        while not stop.is_set():
            deadline = min(s.next_due for s in self.schedules)
            if self.clock.sleep_until(deadline, stop):
                return
            self.tick()

    def tick(self) -> int:
        """Read every due source once; return the number of lines appended."""
        started = self.clock.monotonic()
        readings: list[Reading] = []
        for schedule in self.schedules:
            if schedule.next_due <= started:
                readings.extend(self._read(schedule.source))
                schedule.next_due = _next_due(schedule, started)
        if self.extra_readings is not None:
            readings.extend(self.extra_readings())
        lines = self._encode(readings)
        if lines:
            if self.sink.append(lines):
                log.debug("tick: %d lines appended to the WAL", len(lines))
            else:
                log.debug("tick: %d lines dropped: the WAL could not take them", len(lines))
        self._record(started, len(readings), len(lines))
        return len(lines)

    def _read(self, source: Source) -> Sequence[Reading]:
        try:
            readings = source.read()
        except SourceError as e:
            self.stats.source_errors_total += 1
            if self.stats.failing_sources.get(source.name) != str(e):
                log.error("source %s failed: %s", source.name, e)
            self.stats.failing_sources[source.name] = str(e)
            return ()
        if self.stats.failing_sources.pop(source.name, None) is not None:
            log.warning("source %s is readable again", source.name)
        self.stats.source_errors_total += sum(1 for r in readings if r.fields.get("failed") == 1)
        return readings

    def _encode(self, readings: Sequence[Reading]) -> list[bytes]:
        if self.labels:
            readings = [
                Reading(r.measurement, {**self.labels, **r.tags}, r.fields, r.time_ns)
                for r in readings
            ]
        if self.observe is not None:
            self.observe(readings)
        lines: list[bytes] = []
        for reading in readings:
            try:
                line = self.encode(reading)
            except EncodeError as e:
                self.stats.encode_errors_total += 1
                suppressed = self._throttle.due(reading.measurement)
                if suppressed is not None:
                    log.error(
                        "dropping a %s reading that cannot be encoded (%d more since the last "
                        "report): %s",
                        reading.measurement,
                        suppressed,
                        e,
                    )
                continue
            if line is not None:
                lines.append(line)
        return lines

    def _record(self, started: float, readings: int, lines: int) -> None:
        duration_s = self.clock.monotonic() - started
        self.stats.ticks_total += 1
        self.stats.readings_total += readings
        self.stats.lines_total += lines
        self.stats.last_tick_duration_s = duration_s
        if duration_s > min(s.interval_s for s in self.schedules):
            self.stats.tick_overruns_total += 1


def _next_due(schedule: Schedule, now: float) -> float:
    """The next slot after ``now`` on the grid: a slow tick skips slots, never bunches."""
    due = schedule.next_due + schedule.interval_s
    if due <= now:
        missed = int((now - schedule.next_due) // schedule.interval_s)
        due = schedule.next_due + (missed + 1) * schedule.interval_s
    return due
