"""Repeated log messages, said once and then at most once per interval.

A fault that lasts (a full disk, a store refusing every line, a label the
encoder refuses) repeats on every tick or batch: logged each time, it would
bury the journal in tens of thousands of identical lines an hour. The counters
still count every occurrence; the log says the first one, then how many
followed, once per interval.
"""

from __future__ import annotations

from wattwise.clock import Clock


class LogThrottle:
    """Decides whether a message with a given key is due to be logged."""

    def __init__(self, clock: Clock, interval_s: float = 60.0) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def due(self, key: str) -> int | None:
        """None while ``key`` is quiet; else how many occurrences were not logged since the
        last time it was (0 the first time), and the interval starts again."""
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)

    def reset(self, key: str) -> bool:
        """Forget ``key`` (the fault is over); True if it had been logged."""
        self._suppressed.pop(key, None)
        return self._last.pop(key, None) is not None
