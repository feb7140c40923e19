"""Clocks: wall time for timestamps, monotonic time for scheduling.

Everything that waits or stamps takes a :class:`Clock`, so tests drive time with
:class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What code that stamps samples or schedules work needs to know about time."""

    def time_ns(self) -> int:
        """Wall-clock time in nanoseconds since the epoch (sample timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (intervals, deadlines)."""
        ...

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        """Wait until ``monotonic() >= deadline``; return True if ``stop`` was set first."""
        ...


class SystemClock:
    """The real clocks of this machine."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return stop.is_set()
        return stop.wait(remaining)


class ManualClock:
    """A clock that only moves when told to; ``sleep_until`` jumps straight to the deadline."""

    def __init__(
        self, start_ns: int = 1_700_000_000_000_000_000, monotonic: float = 1000.0
    ) -> None:
        self._time_ns = start_ns
        self._monotonic = monotonic

    def time_ns(self) -> int:
        return self._time_ns

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._time_ns += round(seconds * 1e9)

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        if deadline > self._monotonic:
            self.advance(deadline - self._monotonic)
        return stop.is_set()
