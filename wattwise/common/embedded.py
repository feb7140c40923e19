"""The embedded store: a local SQLite database that takes line protocol like InfluxDB.

It implements the :class:`~wattwise.common.transport.Transport` protocol, so the
sender that feeds InfluxDB feeds it unchanged (``make demo``, single nodes).
Like InfluxDB, a sample is identified by its series (measurement and tags),
field and timestamp: writing it again overwrites it, so a resend after a crash
invents nothing.

Layout, chosen for the optimizer's reads (one field of one measurement over a
time range)::

    series(id, measurement, tags_json, latest_ns)   UNIQUE(measurement, tags_json)
    samples(series_id, field, time_ns, value, kind) PRIMARY KEY(series_id, field, time_ns)

``value`` has no declared type, so SQLite keeps ints as INTEGER, floats as REAL
and strings as TEXT exactly; ``kind`` tells floats, ints, bools and strings
apart when reading back. ``latest_ns`` makes "newest sample per series" cheap.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wattwise.collector.base import FieldValue
from wattwise.common.lineproto import ParsedLine, parse_line
from wattwise.errors import EncodeError, RejectedBatch, TransientDeliveryError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    latest_ns INTEGER NOT NULL,
    UNIQUE (measurement, tags_json)
);
CREATE TABLE IF NOT EXISTS samples (
    series_id INTEGER NOT NULL REFERENCES series (id),
    field TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    value NOT NULL,
    kind INTEGER NOT NULL,
    PRIMARY KEY (series_id, field, time_ns)
) WITHOUT ROWID;
"""
_FLOAT, _INT, _BOOL, _STR = 0, 1, 2, 3
_KIND_OF: dict[type, int] = {float: _FLOAT, int: _INT, bool: _BOOL, str: _STR}

SeriesKey = tuple[str, str]  # (measurement, tags_json)


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(tags, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _value(stored: float | int | str, kind: int) -> FieldValue:
    if kind == _FLOAT:
        return float(stored)
    if kind == _BOOL:
        return bool(stored)
    return stored


class EmbeddedStore:
    """A SQLite telemetry store at ``path``: one writer thread, readers from any thread."""

    name = "embedded"

    def __init__(
        self, path: Path, *, busy_timeout_s: float = 5.0, wal_limit_bytes: int = 64 << 20
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._series_ids: dict[SeriesKey, int] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes
            # A reader mid-query stops checkpoints from reusing the WAL, which then grows
            # with every write (2.4 GB in minutes under a refit); once a checkpoint does
            # reset it, this cuts the file back instead of keeping its high-water mark.
            self._db.execute(f"PRAGMA journal_size_limit = {int(wal_limit_bytes)}")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise TransientDeliveryError(f"embedded store {path}: cannot open: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                raise TransientDeliveryError(f"embedded store {self.path}: {e}") from e

    def write(self, lines: Sequence[bytes]) -> None:
        """Store every line in one transaction, or none of them."""
        parsed = []
        for number, line in enumerate(lines):
            try:
                parsed.append(parse_line(line))
            except EncodeError as e:
                raise RejectedBatch(f"line {number} of {len(lines)}: {e}") from e
        new_ids: dict[SeriesKey, int] = {}
        with self._transaction() as db:
            rows = []
            latest: dict[int, int] = {}
            for point in parsed:
                series_id = self._series_id(db, point, new_ids)
                latest[series_id] = max(latest.get(series_id, point.time_ns), point.time_ns)
                for field, value in point.fields.items():
                    rows.append((series_id, field, point.time_ns, value, _KIND_OF[type(value)]))
            db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET value = excluded.value, kind = excluded.kind",
                rows,
            )
            db.executemany(
                "UPDATE series SET latest_ns = max(latest_ns, ?) WHERE id = ?",
                [(time_ns, series_id) for series_id, time_ns in latest.items()],
            )
        self._series_ids.update(new_ids)  # only once committed: a rollback forgets them

    def _series_id(
        self, db: sqlite3.Connection, point: ParsedLine, new_ids: dict[SeriesKey, int]
    ) -> int:
        key = (point.measurement, _tags_json(point.tags))
        known = self._series_ids.get(key) or new_ids.get(key)
        if known is not None:
            return known
        db.execute(
            "INSERT INTO series (measurement, tags_json, latest_ns) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (*key, point.time_ns),
        )
        (series_id,) = db.execute(
            "SELECT id FROM series WHERE measurement = ? AND tags_json = ?", key
        ).fetchone()
        new_ids[key] = series_id
        return int(series_id)

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise TransientDeliveryError(f"embedded store {self.path}: {e}") from e

    def count(self, measurement: str, field: str | None = None) -> int:
        """How many samples (one per field and timestamp) the measurement holds."""
        sql = "SELECT count(*) FROM samples JOIN series ON id = series_id WHERE measurement = ?"
        params: list[object] = [measurement]
        if field is not None:
            sql += " AND field = ?"
            params.append(field)
        ((total,),) = self._read(sql, params)
        return int(total)

    def latest(self, measurement: str) -> list[ParsedLine]:
        """The newest point of every series of ``measurement``, ordered by tags."""
        rows = self._read(
            "SELECT tags_json, latest_ns, field, value, kind FROM series"
            " JOIN samples ON series_id = id AND time_ns = latest_ns"
            " WHERE measurement = ? ORDER BY tags_json, field",
            [measurement],
        )
        points: dict[str, ParsedLine] = {}
        for tags_json, time_ns, field, value, kind in rows:
            point = points.get(tags_json)
            if point is None:
                tags = json.loads(tags_json)
                point = points[tags_json] = ParsedLine(measurement, tags, {}, time_ns)
            point.fields[field] = _value(value, kind)
        return list(points.values())

    def select(
        self,
        measurement: str,
        field: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[tuple[int, dict[str, str], FieldValue]]:
        """``(time_ns, tags, value)`` of one field, ``start_ns <= time < end_ns``, by time.

        ``tags`` keeps the series whose tags include all of the given ones.
        """
        sql = (
            "SELECT time_ns, tags_json, value, kind FROM samples JOIN series ON id = series_id"
            " WHERE measurement = ? AND field = ?"
        )
        params: list[object] = [measurement, field]
        if start_ns is not None:
            sql += " AND time_ns >= ?"
            params.append(start_ns)
        if end_ns is not None:
            sql += " AND time_ns < ?"
            params.append(end_ns)
        wanted = dict(tags or {}).items()
        out = []
        for time_ns, tags_json, value, kind in self._read(
            sql + " ORDER BY time_ns, tags_json", params
        ):
            series_tags: dict[str, str] = json.loads(tags_json)
            if wanted <= series_tags.items():
                out.append((int(time_ns), series_tags, _value(value, kind)))
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
