"""The power-event book: validation, cancelling, the file it is kept in, and the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.optimizer_process import Optimizer, optimizer_config
from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import encode_many
from wattwise.errors import ConfigError, StoreUnavailable
from wattwise.optimizer.service.power_events import (
    KEEP_ENDED_S,
    EventBook,
    EventConflict,
    EventsNotSaved,
    InvalidEvent,
    UnknownEvent,
    event_state,
    open_event_book,
    power_event_readings,
    store_writer,
)
from wattwise.optimizer.service.views import iso
from wattwise.optimizer.store import EmbeddedSqliteStore

NOW_NS = 1_714_644_000 * 10**9  # 2024-05-02T10:00:00Z
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MIN = 60 * 10**9
HOUR = 60 * MIN


def _book(path: Path | None, clock: ManualClock | None = None, **kw: object) -> EventBook:
    return EventBook(path, clock or ManualClock(start_ns=NOW_NS), **kw)  # type: ignore[arg-type]


def test_an_event_is_kept_across_a_restart_exactly_as_added(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    book = _book(path)
    added = book.add("rack:r01", 30_000.0, NOW_NS + HOUR, NOW_NS + 3 * HOUR, "feed B work")
    assert len(added.id) == 32 and int(added.id, 16) >= 0  # uuid4 hex
    again = _book(path)
    assert again.get(added.id) == added
    assert again.list() == [added]
    # Written whole through a temporary file: nothing else is left beside it.
    assert os.listdir(tmp_path) == ["events.json"]
    assert json.loads(path.read_text())["version"] == 1


def test_without_a_file_events_live_in_memory_only(tmp_path: Path) -> None:
    book = _book(None)
    book.add("site", 1e6, NOW_NS, NOW_NS + HOUR, "")
    assert len(book.list()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("row 3", 1e3, 0, HOUR), "scope"),
        (("rack:", 1e3, 0, HOUR), "scope"),
        (("zone:a:b", 1e3, 0, HOUR), "scope"),
        (("rack:r01", 0.0, 0, HOUR), "limit_w"),
        (("rack:r01", -5.0, 0, HOUR), "limit_w"),
        (("rack:r01", float("nan"), 0, HOUR), "limit_w"),
        (("rack:r01", float("inf"), 0, HOUR), "limit_w"),
        (("rack:r01", 1e3, HOUR, HOUR), "end"),  # ends as it starts
        (("rack:r01", 1e3, -2 * HOUR, -HOUR), "end"),  # over already
        (("rack:r01", 1e3, 0, 400 * 24 * HOUR), "end"),  # a lasting limit, not an event
    ],
)
def test_bad_values_are_refused_naming_the_field_and_nothing_is_kept(
    tmp_path: Path, args: tuple[str, float, int, int], field: str
) -> None:
    path = tmp_path / "events.json"
    book = _book(path)
    scope, limit, start, end = args
    with pytest.raises(InvalidEvent) as refused:
        book.add(scope, limit, NOW_NS + start, NOW_NS + end, "")
    assert refused.value.field == field
    assert isinstance(refused.value, ValueError)
    assert book.list(include_ended=True) == [] and not path.exists()


def test_a_multi_line_reason_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="reason"):
        _book(None).add("site", 1e6, NOW_NS, NOW_NS + HOUR, "one\ntwo")


def test_an_event_that_started_earlier_but_ends_later_is_allowed_and_active() -> None:
    book = _book(None)
    event = book.add("zone:z1", 2e5, NOW_NS - HOUR, NOW_NS + HOUR, "")
    assert event_state(event, NOW_NS) == "active"
    assert book.active(NOW_NS) == [event]


def test_active_is_exactly_the_events_in_force_at_that_time() -> None:
    book = _book(None)
    later = book.add("rack:r01", 3e4, NOW_NS + HOUR, NOW_NS + 2 * HOUR, "")
    now = book.add("rack:r02", 3e4, NOW_NS, NOW_NS + HOUR, "")
    assert book.active(NOW_NS) == [now]
    assert book.active(NOW_NS + HOUR) == [later]  # the end is exclusive, the start inclusive
    assert book.active(NOW_NS + 2 * HOUR) == []
    assert event_state(later, NOW_NS) == "scheduled"


def test_cancel_ends_an_event_at_once_and_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    clock = ManualClock(start_ns=NOW_NS)
    book = _book(path, clock)
    event = book.add("rack:r01", 3e4, NOW_NS, NOW_NS + 2 * HOUR, "")
    clock.advance(600)
    cancelled = book.cancel(event.id)
    assert cancelled.cancelled_ns == NOW_NS + 10 * MIN
    assert event_state(cancelled, clock.time_ns()) == "cancelled"
    assert book.active(clock.time_ns()) == []
    again = _book(path, clock)
    assert again.get(event.id) == cancelled
    assert again.list() == [] and again.list(include_ended=True) == [cancelled]


def test_cancelling_twice_or_after_the_end_is_a_conflict_and_unknown_ids_are_unknown() -> None:
    clock = ManualClock(start_ns=NOW_NS)
    book = _book(None, clock)
    first = book.add("rack:r01", 3e4, NOW_NS, NOW_NS + HOUR, "")
    second = book.add("rack:r02", 3e4, NOW_NS, NOW_NS + 2 * HOUR, "")
    book.cancel(first.id)
    with pytest.raises(EventConflict, match="cancelled"):
        book.cancel(first.id)
    clock.advance(3 * 3600)
    with pytest.raises(EventConflict, match="ended"):
        book.cancel(second.id)
    with pytest.raises(UnknownEvent):
        book.cancel("0" * 32)
    with pytest.raises(UnknownEvent):
        book.get("nope")


def test_list_shows_what_is_to_come_by_start_and_all_of_them_when_asked() -> None:
    clock = ManualClock(start_ns=NOW_NS)
    book = _book(None, clock)
    late = book.add("site", 9e5, NOW_NS + 5 * HOUR, NOW_NS + 6 * HOUR, "")
    soon = book.add("site", 9e5, NOW_NS + HOUR, NOW_NS + 2 * HOUR, "")
    short = book.add("site", 9e5, NOW_NS, NOW_NS + MIN, "")
    clock.advance(120)
    assert book.list() == [soon, late]
    assert book.list(include_ended=True) == [short, soon, late]


def test_events_over_for_more_than_30_days_are_pruned_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    clock = ManualClock(start_ns=NOW_NS)
    book = _book(path, clock)
    old = book.add("rack:r01", 3e4, NOW_NS, NOW_NS + HOUR, "")
    clock.advance(KEEP_ENDED_S)  # the first ended 30 days less an hour ago: kept
    recent = book.add("rack:r01", 3e4, clock.time_ns(), clock.time_ns() + HOUR, "")
    assert {e.id for e in book.list(include_ended=True)} == {old.id, recent.id}
    clock.advance(2 * 3600)  # it is now over for more than 30 days
    newest = book.add("rack:r02", 3e4, clock.time_ns(), clock.time_ns() + HOUR, "")
    kept = {e["id"] for e in json.loads(path.read_text())["events"]}
    assert kept == {recent.id, newest.id}


GOOD_ITEM = {
    "id": "a", "scope": "rack:r01", "limit_w": 3e4, "start_ns": 1, "end_ns": 2, "reason": "",
    "created_ns": 0, "cancelled_ns": None,
}  # fmt: skip


def test_the_good_item_the_damaged_files_are_made_from_loads(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"version": 1, "events": [GOOD_ITEM]}))
    assert _book(path).get("a").limit_w == 3e4


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"version": 2, "events": []}),
        json.dumps({"version": 1, "events": {}}),
        json.dumps({"version": 1, "events": [{"id": "x"}]}),
        json.dumps({"version": 1, "events": [dict(GOOD_ITEM, limit_w="30 kW")]}),
        json.dumps({"version": 1, "events": [dict(GOOD_ITEM, scope="row 3")]}),
        json.dumps({"version": 1, "events": [dict(GOOD_ITEM, start_ns=True)]}),
    ],
)
def test_a_damaged_file_stops_the_start_naming_the_setting(tmp_path: Path, text: str) -> None:
    path = tmp_path / "events.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        _book(path)
    assert refused.value.key == "budgets.events_file"
    assert str(path) in str(refused.value)
    assert path.read_text() == text  # left as it was, for the operator to look at


def test_an_unwritable_file_refuses_the_change_and_keeps_the_book_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.json"
    book = _book(path)
    kept = book.add("site", 1e6, NOW_NS, NOW_NS + HOUR, "")
    path.unlink()
    (path / "in-the-way").mkdir(parents=True)  # the rename onto it fails, even as root
    with pytest.raises(EventsNotSaved, match=r"budgets\.events_file"):
        book.add("rack:r01", 3e4, NOW_NS, NOW_NS + HOUR, "")
    with pytest.raises(EventsNotSaved):
        book.cancel(kept.id)
    assert book.list() == [kept] and book.get(kept.id).cancelled_ns is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.json"]  # no temp file left


def test_serve_refuses_an_events_file_in_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        open_event_book(tmp_path / "nope" / "events.json", ManualClock())
    assert refused.value.key == "budgets.events_file"
    assert open_event_book(None, ManualClock()).path is None


def test_concurrent_adds_and_cancels_all_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    book = _book(path)
    added: list[str] = []

    def work(k: int) -> None:
        for i in range(10):
            event = book.add(f"rack:r{k}", 1e3 + i, NOW_NS, NOW_NS + HOUR, f"{k}/{i}")
            added.append(event.id)
            if i % 2:
                book.cancel(event.id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = {e["id"]: e for e in json.loads(path.read_text())["events"]}
    assert set(saved) == set(added) and len(added) == 40
    assert sum(e["cancelled_ns"] is not None for e in saved.values()) == 20


def test_each_change_is_written_to_the_store_as_a_power_event_point(tmp_path: Path) -> None:
    store_path = tmp_path / "wattwise.sqlite"
    store = EmbeddedSqliteStore(store_path)
    clock = ManualClock(start_ns=NOW_NS)
    book = _book(tmp_path / "events.json", clock, write=store_writer(store))
    event = book.add("rack:r01", 30_000.0, NOW_NS + MIN, NOW_NS + HOUR, "feed B work")
    points = EmbeddedStore(store_path).latest("power_event")
    assert len(points) == 1
    (point,) = points
    assert point.tags == {"scope": "rack:r01", "event": event.id}
    assert point.time_ns == event.start_ns
    assert point.fields == {
        "limit_w": 30_000.0,
        "start_ns": event.start_ns,
        "end_ns": event.end_ns,
        "end_ms": event.end_ns // 10**6,
        "reason": "feed B work",
        "text": "rack:r01 limited to 30,000 W: feed B work",
        "cancelled": 0,
    }
    clock.advance(20 * 60)
    book.cancel(event.id)
    # The cancellation rewrites the event's one point: its region now ends at the cancel.
    (point,) = EmbeddedStore(store_path).latest("power_event")
    assert point.fields["cancelled"] == 1
    assert point.fields["end_ms"] == (NOW_NS + 20 * MIN) // 10**6
    assert str(point.fields["text"]).endswith("(cancelled)")
    store.close()


def test_a_store_failure_costs_the_point_but_never_the_event(tmp_path: Path) -> None:
    path = tmp_path / "events.json"

    def down(readings: object) -> None:
        raise StoreUnavailable("store down")

    book = _book(path, write=down)
    event = book.add("site", 1e6, NOW_NS, NOW_NS + HOUR, "")
    assert book.store_write_failures == 1
    assert _book(path).get(event.id) == event


def test_power_event_points_encode_as_the_schema_says() -> None:
    book = _book(None)
    event = book.add("zone:hall-a", 2.5e5, NOW_NS, NOW_NS + HOUR, 'say "hi", ok')
    (reading,) = power_event_readings([event])
    assert isinstance(reading, Reading)
    (line,) = encode_many([reading])
    assert line.startswith(b"power_event,event=" + event.id.encode() + b",scope=zone:hall-a ")
    assert b"cancelled=0i" in line and b"limit_w=250000.0" in line
    assert b'reason="say \\"hi\\", ok"' in line


def _serve_config(tmp_path: Path, twin_data: tuple[Path, int], events: Path) -> Path:
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin_data[0], store)
    return optimizer_config(
        tmp_path,
        f'kind = "embedded"\nembedded_path = "{store}"',
        budgets=f'events_file = "{events}"',
    )


def test_serve_keeps_events_across_a_restart(tmp_path: Path, twin_data: tuple[Path, int]) -> None:
    events = tmp_path / "state" / "power-events.json"
    events.parent.mkdir()
    config = _serve_config(tmp_path, twin_data, events)
    now_ns = time.time_ns()
    body = {
        "scope": "rack:r01",
        "limit_w": 30_000,
        "start": iso(now_ns + HOUR),
        "end": iso(now_ns + 2 * HOUR),
        "reason": "feed B maintenance",
    }
    first = Optimizer(config, tmp_path / "first.log")
    try:
        first.wait_until(ready=False)
        added = httpx.post(f"{first.url}/v1/power-events", headers=ADMIN, json=body, timeout=30)
    finally:
        first.stop()
    assert added.status_code == 201, added.text
    second = Optimizer(config, tmp_path / "second.log")
    try:
        second.wait_until(ready=False)
        url = f"{second.url}/v1/power-events/{added.json()['id']}"
        again = httpx.get(url, headers=READ, timeout=30)
    finally:
        second.stop()
    assert again.status_code == 200 and again.json() == added.json()


def test_serve_with_a_damaged_events_file_exits_2_naming_the_setting(
    tmp_path: Path, twin_data: tuple[Path, int]
) -> None:
    events = tmp_path / "power-events.json"
    events.write_text('{"version": 1, "events": [{"id": ')
    config = _serve_config(tmp_path, twin_data, events)
    result = subprocess.run(
        [sys.executable, "-m", "wattwise", "optimizer", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "budgets.events_file" in result.stderr and str(events) in result.stderr
