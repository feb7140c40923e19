"""Refreshes at power events' edges: a plan follows an event at its start, its end and when
it is added or cancelled, not at the next scheduled refresh."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED

from tests.faults.optimizer_process import Optimizer, optimizer_config
from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN
from wattwise.clock import ManualClock, SystemClock
from wattwise.optimizer.service.event_edges import EventEdges
from wattwise.optimizer.service.power_events import EventBook
from wattwise.optimizer.service.views import iso

NOW_NS = 1_714_644_000 * 10**9
S = 10**9
HOUR = 3600 * S


def test_edges_are_the_starts_and_ends_ahead_of_events_not_cancelled_in_order() -> None:
    clock = ManualClock(start_ns=NOW_NS)
    book = EventBook(None, clock)
    assert book.edges_after(NOW_NS) == []
    running = book.add("site", 40_000.0, NOW_NS - HOUR, NOW_NS + 3 * HOUR)
    later = book.add("rack:r01", 9_000.0, NOW_NS + HOUR, NOW_NS + 2 * HOUR)
    assert book.edges_after(NOW_NS) == [NOW_NS + HOUR, NOW_NS + 2 * HOUR, running.end_ns]
    assert book.edges_after(NOW_NS + HOUR) == [NOW_NS + 2 * HOUR, running.end_ns]  # strictly
    book.cancel(later.id)
    assert book.edges_after(NOW_NS) == [running.end_ns]
    book.cancel(running.id)
    assert book.edges_after(NOW_NS) == []


def test_with_a_lead_an_event_counts_and_its_edge_comes_that_much_before_its_start() -> None:
    book = EventBook(None, ManualClock(start_ns=NOW_NS))
    event = book.add("site", 40_000.0, NOW_NS + HOUR, NOW_NS + 2 * HOUR)
    lead_ns = 90 * S
    assert book.edges_after(NOW_NS, lead_ns) == [event.start_ns - lead_ns, event.end_ns]
    assert book.edges_after(event.start_ns - lead_ns, lead_ns) == [event.end_ns]
    assert book.active(event.start_ns - lead_ns - 1, lead_ns) == []
    assert book.active(event.start_ns - lead_ns, lead_ns) == [event]
    assert book.active(event.start_ns - lead_ns) == []  # without the lead: from its start
    assert book.active(event.end_ns, lead_ns) == []


def test_a_failing_listener_never_fails_the_change() -> None:
    book = EventBook(None, ManualClock(start_ns=NOW_NS))
    calls: list[str] = []

    def broken() -> None:
        calls.append("called")
        raise RuntimeError("scheduler gone")

    book.add_listener(broken)
    event = book.add("site", 40_000.0, NOW_NS, NOW_NS + HOUR)
    assert book.get(event.id) == event and calls == ["called"]


class _Refreshes:
    """What the events in force were at each refresh (the refresh's own view of them)."""

    def __init__(self, book: EventBook) -> None:
        self.book = book
        self.seen: list[list[str]] = []
        self._cond = threading.Condition()

    def __call__(self) -> None:
        active = [e.id for e in self.book.active(time.time_ns())]
        with self._cond:
            self.seen.append(active)
            self._cond.notify_all()

    def wait_for(self, check: Callable[[list[list[str]]], bool], timeout_s: float = 20) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: check(self.seen), timeout=timeout_s)
        assert ok, f"refreshes seen: {self.seen}"


def _edges(book: EventBook) -> tuple[BackgroundScheduler, EventEdges, _Refreshes]:
    scheduler = BackgroundScheduler(timezone="UTC")
    refreshes = _Refreshes(book)
    edges = EventEdges(scheduler, book, refreshes, SystemClock())
    edges.follow()
    scheduler.start()
    return scheduler, edges, refreshes


def test_an_event_is_planned_from_its_start_and_dropped_from_its_end() -> None:
    book = EventBook(None, SystemClock())
    scheduler, edges, refreshes = _edges(book)
    try:
        now_ns = time.time_ns()
        event = book.add("site", 40_000.0, now_ns + S // 2, now_ns + 3 * S // 2)
        # at once for the change (not in force yet), at its start (in force), at its end
        refreshes.wait_for(lambda seen: [event.id] in seen and seen[-1] == [] and len(seen) >= 3)
    finally:
        scheduler.shutdown(wait=True)
    first_in_force = refreshes.seen.index([event.id])
    assert refreshes.seen[0] == [] and refreshes.seen[first_in_force + 1 :] == [[]]
    assert edges.edges_ns == frozenset()  # nothing ahead: no edge waited for


def test_cancelling_an_event_in_force_refreshes_at_once() -> None:
    book = EventBook(None, SystemClock())
    now_ns = time.time_ns()
    event = book.add("site", 40_000.0, now_ns - S, now_ns + HOUR)
    scheduler, edges, refreshes = _edges(book)
    try:
        assert edges.edges_ns == {event.end_ns}  # waiting for its end, an hour on
        book.add_listener(lambda: None)  # listeners added later are called too
        other = book.add("rack:r01", 9_000.0, now_ns + 2 * HOUR, now_ns + 3 * HOUR)
        refreshes.wait_for(lambda seen: len(seen) >= 1)
        book.cancel(event.id)
        refreshes.wait_for(lambda seen: seen[-1] == [])
    finally:
        scheduler.shutdown(wait=True)
    assert refreshes.seen[0] == [event.id]
    assert all(other.id not in active for active in refreshes.seen)
    # every edge ahead got its job when its event came; the cancelled one's end stays
    assert edges.edges_ns == {event.end_ns, other.start_ns, other.end_ns}


def test_a_shutdown_while_a_refresh_runs_never_hangs() -> None:
    # Regression: a job added the next edge's job after its refresh. The scheduler's
    # shutdown(wait=True) holds the lock add_job takes while it waits for running jobs,
    # so the job waited for the shutdown and the shutdown for the job (300 s, in CI).
    book = EventBook(None, SystemClock())
    running, release = threading.Event(), threading.Event()

    def refresh() -> None:
        running.set()
        release.wait(10)

    scheduler = BackgroundScheduler(timezone="UTC")
    EventEdges(scheduler, book, refresh, SystemClock()).follow()
    scheduler.start()
    now_ns = time.time_ns()
    book.add("site", 40_000.0, now_ns - S, now_ns + HOUR)  # in force, its end ahead
    assert running.wait(10)
    # Until the scheduler has dropped the running one-off job from its store, a shutdown
    # (state STOPPED first) makes that drop look for it among the pending jobs and raise
    # in the scheduler's thread: APScheduler's own race, not the one this test is about.
    deadline = time.monotonic() + 10
    while len(scheduler.get_jobs()) > 1 and time.monotonic() < deadline:  # its end's job
        time.sleep(0.01)
    stopping = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
    stopping.start()
    deadline = time.monotonic() + 10
    while scheduler.state != STATE_STOPPED and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the shutdown now waits for the running refresh, holding that lock
    release.set()
    stopping.join(10)
    assert not stopping.is_alive(), "the scheduler's shutdown hung"


def test_serve_plans_an_event_from_its_start_without_waiting_for_the_refresh_interval(
    tmp_path: Path, twin_data: tuple[Path, int]
) -> None:
    """The regression: a plan changed only at the next scheduled refresh (here a day)."""
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin_data[0], store)
    config = optimizer_config(tmp_path, f'kind = "embedded"\nembedded_path = "{store}"')
    optimizer = Optimizer(config, tmp_path / "serve.log")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    plans_url = f"{optimizer.url}/v1/recommendations/power-budget"

    def event_plans(event_id: str) -> list[dict[str, object]]:
        items = httpx.get(plans_url, headers=read, timeout=30).json()["items"]
        return [p for p in items if p["event_id"] == event_id]

    try:
        optimizer.wait_until(ready=True)
        now_ns = time.time_ns()
        body = {"scope": "site", "limit_w": 1e6, "start": iso(now_ns + 3 * S)}
        body["end"] = iso(now_ns + 9 * S)
        added = httpx.post(f"{optimizer.url}/v1/power-events", headers=admin, json=body)
        assert added.status_code == 201, added.text
        event_id = added.json()["id"]
        planned = _poll(lambda: bool(event_plans(event_id)), timeout_s=60)
        dropped = _poll(lambda: not event_plans(event_id) and time.time_ns() > now_ns + 9 * S)
    finally:
        optimizer.stop()
    assert planned, optimizer.text()[-3000:]
    assert dropped, optimizer.text()[-3000:]


def _poll(check: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False
