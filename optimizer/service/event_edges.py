"""Refreshes at the edges of power events, so that a budget plan follows an event when it
starts, when it ends and when it is added or cancelled, not at the next scheduled
refresh (up to ``recommend.refresh_interval_s`` later, 5 minutes by default).

:class:`EventEdges` adds a one-off job at every start and end of the events still ahead
(:meth:`.EventBook.edges_after`) when it starts following the book and at every change
to it, and a job that refreshes at once for the change itself. A job only refreshes: it
never adds a job. APScheduler's shutdown holds the lock ``add_job`` takes while it waits
for running jobs, so a job adding the next edge at that moment waited forever (a test
that shut down with ``wait=True`` hung so). Jobs are only ever added, never replaced or
removed: the scheduler's thread removes a one-off job after submitting it, and a job
replaced under the same id at that moment is lost or stops that thread. An edge whose
event was cancelled meanwhile costs one refresh that changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler

from wattwise.clock import Clock
from wattwise.optimizer.service.power_events import EventBook

log = logging.getLogger(__name__)

_NS_PER_US = 1000


class EventEdges:
    """Refresh (``refresh``, which logs and counts its own failures) at every edge of the
    events in ``events``, starts ``lead_ns`` early (``budgets.event_lead_s``: the planner
    counts an event that long before it starts); call :meth:`follow` once."""

    def __init__(
        self,
        scheduler: BaseScheduler,
        events: EventBook,
        refresh: Callable[[], object],
        clock: Clock,
        lead_ns: int = 0,
    ) -> None:
        self._scheduler = scheduler
        self._lead_ns = lead_ns
        self._events = events
        self._refresh = refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._edges_ns: set[int] = set()
        self._change_waiting = False

    @property
    def edges_ns(self) -> frozenset[int]:
        """The edges a job waits for."""
        with self._lock:
            return frozenset(self._edges_ns)

    def follow(self) -> None:
        """Start: refresh at every edge ahead, and at once on every change to the book."""
        self._events.add_listener(self.changed)
        self._schedule_edges()

    def changed(self) -> None:
        """An event was added or cancelled: refresh now (the new event may be in force
        already, or the cancelled one was), and at the new event's edges. Changes that
        come while one such refresh waits to start are all seen by it: it reads the book
        when it starts."""
        with self._lock:
            waiting, self._change_waiting = self._change_waiting, True
        if not waiting:
            self._add(self._after_change, self._clock.time_ns())
        self._schedule_edges()

    def _after_change(self) -> None:
        with self._lock:
            self._change_waiting = False
        self._refresh()

    def _at_edge(self, edge_ns: int) -> None:
        with self._lock:
            self._edges_ns.discard(edge_ns)
        self._refresh()

    def _schedule_edges(self) -> None:
        """A job at each edge ahead that none waits for yet. Called when following starts
        and on changes, never from a job (see the module's docstring)."""
        with self._lock:
            ahead = self._events.edges_after(self._clock.time_ns(), self._lead_ns)
            new = [edge_ns for edge_ns in ahead if edge_ns not in self._edges_ns]
            self._edges_ns.update(new)
        for edge_ns in new:
            log.debug("power event edge at %s", _at(edge_ns).isoformat())
            self._add(self._at_edge, edge_ns, edge_ns)

    def _add(self, run: Callable[..., None], at_ns: int, *args: int) -> None:
        self._scheduler.add_job(
            run,
            "date",
            args=args,
            run_date=_at(at_ns),
            # An edge is never skipped for being late: the limits changed all the same.
            misfire_grace_time=None,
        )


def _at(time_ns: int) -> datetime:
    """``time_ns`` rounded up to the microsecond: a job never runs before its edge, when
    the event would not be in force yet (or still be)."""
    us = -(-time_ns // _NS_PER_US)
    seconds, rest_us = divmod(us, 1_000_000)  # a float of microseconds would round
    return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=rest_us)
