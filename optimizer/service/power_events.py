"""Timed power events: a scope's limit lowered (or raised) for a window, kept across restarts.

An operator adds an event for a demand-response window or a feed under maintenance
(``POST /v1/power-events``); the planner reads the events in force at each refresh
through :meth:`EventBook.active`. The book is the record: every change is written to
``budgets.events_file`` (a temporary file in the same directory, fsynced, then renamed
over the old one, so a crash leaves the old file or the new one, never half of one)
before it is answered. Each change is also written to the telemetry store as a
``power_event`` point, for Grafana's annotations; the store being down costs that
point only, never the event. Without ``events_file`` events are kept in memory and
lost at a restart.

Events that ended (or were cancelled) more than :data:`KEEP_ENDED_S` ago are pruned.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from wattwise.clock import Clock
from wattwise.collector.base import Reading
from wattwise.errors import ConfigError, WattwiseError
from wattwise.optimizer.recommend.budget_types import SCOPE_PATTERN, PowerEvent
from wattwise.optimizer.service import lines
from wattwise.optimizer.telemetry import TelemetryStore

log = logging.getLogger(__name__)

KEEP_ENDED_S = 30 * 86400
"""How long an ended or cancelled event stays listed (``?all=true``) before it is pruned."""
MAX_AHEAD_S = 366 * 86400
"""An event ends at most this far ahead and lasts at most this long: a lasting limit
belongs in the configuration (``[budgets]``), not in a timed event."""
MAX_REASON_CHARS = 500
FILE_VERSION = 1
SETTING = "budgets.events_file"
NS = 1_000_000_000

State = Literal["scheduled", "active", "ended", "cancelled"]
Write = Callable[[Sequence[Reading]], None]
"""Where each change goes as ``power_event`` readings (the telemetry store)."""


class PowerEventError(WattwiseError):
    """A power event cannot be added or changed as asked (the API answers 4xx or 503)."""


class InvalidEvent(PowerEventError, ValueError):
    """A value of a new event is not allowed; ``field`` names it as the API's body does."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnknownEvent(PowerEventError, LookupError):
    """No event has this id (never added, or pruned)."""


class EventConflict(PowerEventError):
    """The event is past changing: it ended, or was cancelled already."""


class EventsNotSaved(PowerEventError):
    """The events file could not be written: the change was not made."""


def event_state(event: PowerEvent, now_ns: int) -> State:
    if event.cancelled_ns is not None:
        return "cancelled"
    if now_ns >= event.end_ns:
        return "ended"
    return "active" if now_ns >= event.start_ns else "scheduled"


def finished_ns(event: PowerEvent) -> int:
    """When the event stopped counting: its end, or its cancellation if that came first."""
    if event.cancelled_ns is None:
        return event.end_ns
    return max(event.start_ns, min(event.end_ns, event.cancelled_ns))


class EventBook:
    """The power events, persisted to ``path`` (``None``: in memory only); thread-safe."""

    def __init__(self, path: Path | None, clock: Clock, write: Write | None = None) -> None:
        self.path = path
        self._clock = clock
        self._write = write
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()
        """Store writes one at a time, each of the event as it is then: whatever order two
        changes of one event reach the store in, its last point is its newest state."""
        self.store_write_failures = 0
        self._events: dict[str, PowerEvent] = {} if path is None else _load(path)
        self._listeners: builtins.list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change (an event added or cancelled), once the
        change is saved: the scheduler moves the next refresh to it (:mod:`.event_edges`)."""
        self._listeners.append(listener)

    def add(
        self, scope: str, limit_w: float, start_ns: int, end_ns: int, reason: str = ""
    ) -> PowerEvent:
        """A new event limiting ``scope`` to ``limit_w`` from ``start_ns`` to ``end_ns``."""
        now_ns = self._clock.time_ns()
        _check(scope, limit_w, start_ns, end_ns, reason, now_ns)
        event = PowerEvent(
            id=uuid.uuid4().hex,
            scope=scope,
            limit_w=float(limit_w),
            start_ns=int(start_ns),
            end_ns=int(end_ns),
            reason=reason,
            created_ns=now_ns,
        )
        with self._lock:
            self._commit({**self._events, event.id: event}, now_ns)
        self._record(event.id)
        log.info("power event %s: %s at %.0f W (%s)", event.id, scope, limit_w, reason)
        self._changed()
        return event

    def cancel(self, event_id: str) -> PowerEvent:
        """End the event now (404 if unknown, 409 if it ended or was cancelled)."""
        with self._lock:
            now_ns = self._clock.time_ns()
            event = self._get(event_id)
            state = event_state(event, now_ns)
            if state in ("ended", "cancelled"):
                raise EventConflict(f"power event {event_id} is {state}: nothing to cancel")
            cancelled = replace(event, cancelled_ns=now_ns)
            self._commit({**self._events, event_id: cancelled}, now_ns)
        self._record(event_id)
        log.info("power event %s cancelled", event_id)
        self._changed()
        return cancelled

    def get(self, event_id: str) -> PowerEvent:
        with self._lock:
            return self._get(event_id)

    def list(self, include_ended: bool = False) -> list[PowerEvent]:
        """Scheduled and active events by start (``include_ended``: every event kept)."""
        now_ns = self._clock.time_ns()
        with self._lock:
            events = list(self._events.values())
        if not include_ended:
            events = [e for e in events if event_state(e, now_ns) in ("scheduled", "active")]
        return sorted(events, key=lambda e: (e.start_ns, e.created_ns, e.id))

    def active(self, now_ns: int, lead_ns: int = 0) -> builtins.list[PowerEvent]:
        """Events in force at ``now_ns``, and those due to start within ``lead_ns``, by
        start (what the planner reads each refresh)."""
        with self._lock:
            events = tuple(self._events.values())
        chosen = (e for e in events if e.active(now_ns, lead_ns))
        return sorted(chosen, key=lambda e: e.start_ns)

    def edges_after(self, now_ns: int, lead_ns: int = 0) -> builtins.list[int]:
        """Every start (``lead_ns`` early) and end after ``now_ns`` of the events not
        cancelled, in order: when :meth:`active` changes by itself."""
        with self._lock:
            events = tuple(self._events.values())
        edges = {
            edge
            for e in events
            if e.cancelled_ns is None
            for edge in (e.start_ns - lead_ns, e.end_ns)
            if edge > now_ns
        }
        return sorted(edges)

    def _changed(self) -> None:
        # The change is saved and answered whatever a listener does: at worst the plan
        # follows it at the next scheduled refresh.
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("power events changed, but a listener failed")

    def _get(self, event_id: str) -> PowerEvent:
        event = self._events.get(event_id)
        if event is None:
            raise UnknownEvent(f"no power event {event_id!r}")
        return event

    def _commit(self, events: dict[str, PowerEvent], now_ns: int) -> None:
        """Save ``events`` (pruned), then make them the book's; nothing changes if saving fails."""
        horizon_ns = now_ns - KEEP_ENDED_S * NS
        kept = {k: e for k, e in events.items() if finished_ns(e) >= horizon_ns}
        if self.path is not None:
            try:
                _save(self.path, kept)
            except OSError as e:
                raise EventsNotSaved(
                    f"{SETTING} {self.path}: {e.strerror or e}; the change was not made"
                ) from e
        self._events = kept

    def _record(self, event_id: str) -> None:
        # The file holds the event; the store's point is for Grafana and may be lost.
        if self._write is None:
            return
        with self._record_lock:
            with self._lock:
                event = self._events.get(event_id)
            if event is None:
                return
            try:
                self._write(power_event_readings([event]))
            except WattwiseError as e:
                self.store_write_failures += 1
                log.warning("power event %s kept, but not written to the store: %s", event_id, e)


def open_event_book(path: Path | None, clock: Clock, write: Write | None = None) -> EventBook:
    """The book of ``optimizer serve``: a file in a directory that must exist, so that a
    misplaced ``budgets.events_file`` stops the start rather than the first event."""
    if path is None:
        log.info("power events are kept in memory only: set %s to keep them", SETTING)
    elif not path.parent.is_dir():
        raise ConfigError(
            SETTING,
            str(path),
            "a file in an existing directory",
            problem="is in a directory that does not exist",
        )
    return EventBook(path, clock, write)


def store_writer(store: TelemetryStore) -> Write:
    """``write`` for an :class:`EventBook` that sends its readings to ``store``."""

    def write(readings: Sequence[Reading]) -> None:
        store.write(lines.encode(readings))

    return write


def power_event_readings(events: Sequence[PowerEvent]) -> list[Reading]:
    """One ``power_event`` point per event, stamped at its start, for Grafana's region
    annotations: ``end_ms`` is where the region ends (epoch milliseconds, what Grafana's
    ``timeEndColumn`` takes), cut short at a cancellation. A cancellation rewrites the
    point of the event's start, so a dashboard shows each event once, as it really ran."""
    out = []
    for event in events:
        end_ns = finished_ns(event)
        fields: dict[str, Any] = {
            "limit_w": float(event.limit_w),
            "start_ns": event.start_ns,
            "end_ns": end_ns,
            "end_ms": end_ns // 1_000_000,
            "reason": event.reason,
            "text": _text(event),
            "cancelled": int(event.cancelled_ns is not None),
        }
        tags = {"scope": event.scope, "event": event.id}
        out.append(Reading("power_event", tags, fields, event.start_ns))
    return out


def _text(event: PowerEvent) -> str:
    text = f"{event.scope} limited to {event.limit_w:,.0f} W"
    if event.reason:
        text += f": {event.reason}"
    return text + (" (cancelled)" if event.cancelled_ns is not None else "")


def _check(
    scope: str, limit_w: float, start_ns: int, end_ns: int, reason: str, now_ns: int
) -> None:
    if not isinstance(scope, str) or not SCOPE_PATTERN.match(scope) or not scope.isprintable():
        raise InvalidEvent("scope", "must be site, zone:<name> or rack:<name>")
    if not isinstance(limit_w, int | float) or not (math.isfinite(limit_w) and limit_w > 0):
        raise InvalidEvent("limit_w", "must be a number of watts greater than 0")
    if end_ns <= start_ns:
        raise InvalidEvent("end", "must be after start")
    if end_ns <= now_ns:
        raise InvalidEvent("end", "is in the past: an event must end in the future")
    if end_ns - now_ns > MAX_AHEAD_S * NS or end_ns - start_ns > MAX_AHEAD_S * NS:
        raise InvalidEvent(
            "end",
            f"more than {MAX_AHEAD_S // 86400} days ahead or after start: a lasting limit "
            "belongs in [budgets] rack_w, zone_w or site_w",
        )
    # Printable: no newline or tab, and no lone surrogate, which JSON may carry and UTF-8 not.
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise InvalidEvent(
            "reason", f"must be one line of at most {MAX_REASON_CHARS} printable characters"
        )


def _save(path: Path, events: dict[str, PowerEvent]) -> None:
    body = {"version": FILE_VERSION, "events": [e.as_dict() for e in events.values()]}
    data = json.dumps(body, indent=1, sort_keys=True).encode()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory's entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "scope": (str,),
    "limit_w": (int, float),
    "start_ns": (int,),
    "end_ns": (int,),
    "reason": (str,),
    "created_ns": (int,),
    "cancelled_ns": (int, type(None)),
}


def _load(path: Path) -> dict[str, PowerEvent]:
    """The events ``path`` holds (none if it does not exist yet); a damaged file is a
    :class:`ConfigError`, never an empty book: the limits it holds would be lost silently."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(SETTING, str(path), f"a readable file ({e.strerror or e})") from e
    try:
        body = json.loads(raw)
        events = [_event(item) for item in _items(body)]
    except (ValueError, TypeError) as e:
        raise ConfigError(
            SETTING,
            str(path),
            f"a power-events file as the optimizer writes it ({e}); move the damaged file "
            "aside to start without its events",
        ) from e
    return {e.id: e for e in events}


def _items(body: object) -> list[object]:
    if not isinstance(body, dict) or body.get("version") != FILE_VERSION:
        raise ValueError(f"not a version {FILE_VERSION} events file")
    items = body.get("events")
    if not isinstance(items, list):
        raise ValueError("no list of events")
    return items


def _event(item: object) -> PowerEvent:
    if not isinstance(item, dict) or set(item) != set(_FIELDS):
        raise ValueError(f"an event must have exactly the keys {', '.join(sorted(_FIELDS))}")
    for key, kinds in _FIELDS.items():
        value = item[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"event {item.get('id')!r}: {key} is {type(value).__name__}")
    if not SCOPE_PATTERN.match(item["scope"]):
        raise ValueError(f"event {item['id']!r}: scope {item['scope']!r}")
    return PowerEvent(**{**item, "limit_w": float(item["limit_w"])})
