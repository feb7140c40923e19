"""The BMC source: inlet temperature and node input power, polled off the tick.

A BMC may take seconds to answer, or not answer at all, so it is polled on its
own thread every ``interval_s`` (default 10 s) and :meth:`BmcSource.read`
only hands over the latest completed poll: a slow or dead BMC never delays a
tick. Each poll is stamped when it started and written once; a poll older
than ``stale_after_intervals`` intervals is not written at all. The backends
are :class:`~wattwise.collector.redfish.RedfishBackend` and
:class:`~wattwise.collector.ipmi.IpmiBackend`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from wattwise.clock import Clock
from wattwise.collector.base import Reading
from wattwise.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BmcValues:
    """What one poll of a BMC found; None is missing (sensor absent or disabled)."""

    inlet_temp_c: float | None = None
    node_power_w: float | None = None


class BmcBackend(Protocol):
    """One way of asking a BMC (Redfish, IPMI)."""

    def poll(self) -> BmcValues:
        """Read the BMC once; raises SourceError when it cannot be read."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Poll:
    values: BmcValues
    time_ns: int
    monotonic_s: float


class BmcSource:
    """Writes the ``host`` fields ``inlet_temp_c`` and ``node_power_w`` from a BMC.

    With ``background=False`` no thread is started and the owner calls
    :meth:`poll_once` itself (tests with a manual clock do this).
    """

    name = "bmc"

    def __init__(
        self,
        *,
        host: str,
        backend: BmcBackend,
        clock: Clock,
        interval_s: float = 10.0,
        stale_after_intervals: float = 3.0,
        background: bool = True,
    ) -> None:
        self._host = host
        self._backend = backend
        self._clock = clock
        self._interval_s = interval_s
        self._stale_after_s = stale_after_intervals * interval_s
        self._lock = threading.Lock()
        self._latest: _Poll | None = None
        self._written: _Poll | None = None
        self._failing = False
        self.failure: str | None = None
        """Why the latest poll failed; None once one succeeds (``agent probe`` shows it)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._poll_until_stopped, name=f"wattwise-bmc-{host}", daemon=True
            )
            self._thread.start()

    def read(self) -> Sequence[Reading]:
        """The latest completed poll if not yet written and not stale; never waits."""
        with self._lock:
            poll = self._latest
        if poll is None or poll is self._written:
            return []
        if self._clock.monotonic() - poll.monotonic_s > self._stale_after_s:
            return []
        self._written = poll
        fields = {
            "inlet_temp_c": poll.values.inlet_temp_c,
            "node_power_w": poll.values.node_power_w,
        }
        if all(value is None for value in fields.values()):
            return []
        return [Reading("host", {"host": self._host}, fields, poll.time_ns)]

    def poll_once(self) -> None:
        """Ask the BMC once and keep the answer; failures are logged on change only."""
        started_ns, started_s = self._clock.time_ns(), self._clock.monotonic()
        try:
            values = self._backend.poll()
        except SourceError as e:
            self._note_failure(str(e))
            return
        except Exception as e:  # a backend bug must not end the polling thread
            log.exception("BMC poll of %s failed unexpectedly", self._host)
            self._note_failure(type(e).__name__)
            return
        with self._lock:
            self._latest = _Poll(values, started_ns, started_s)
        self.failure = None
        if self._failing:
            self._failing = False
            log.info("BMC of %s answers again", self._host)

    def close(self) -> None:
        """Stop polling and release the backend; waits at most 2 s for a poll in flight.

        A poll still running after that ends on its own timeout and the daemon
        thread exits, so shutting the agent down is never held up by the BMC.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._backend.close()

    def _poll_until_stopped(self) -> None:
        next_poll_s = self._clock.monotonic()
        while not self._stop.is_set():
            self.poll_once()
            # A poll that ran past its slot skips the missed slots instead of bunching up.
            next_poll_s = max(next_poll_s + self._interval_s, self._clock.monotonic())
            if self._clock.sleep_until(next_poll_s, self._stop):
                return

    def _note_failure(self, reason: str) -> None:
        self.failure = reason
        if not self._failing:
            self._failing = True
            log.warning("BMC of %s cannot be read: %s (values stay missing)", self._host, reason)
