"""The embedded telemetry store: the agent's SQLite file, read with aggregating SQL.

The file is the one :class:`~wattwise.common.embedded.EmbeddedStore` writes
(``series`` + ``samples``). Series reads group in SQL by the spec's tag values
and ``time_ns / bucket``, pivoting fields into columns with
``avg(CASE WHEN field = … THEN value END)``, so the answer has the same rows
as InfluxDB's ``GROUP BY time(…), <tags> fill(none)``: buckets start at
multiples of ``every_s`` since the epoch and empty buckets are left out.
The primary key ``(series_id, field, time_ns)`` serves every range read.
sqlite3 errors become :class:`~wattwise.errors.StoreError` in :meth:`_chunks`, which
reads answers a chunk of rows at a time (see :data:`~.frames.CHUNK_ROWS`).

A standard deviation is the sample one (n − 1), as InfluxQL's ``STDDEV()``, and missing
in a bucket of one value. It needs the bucket's mean before the differences from it, so
it is a query of its own over its one field (:func:`_variance`), joined to the other
columns by tags and bucket (a GPU read takes ~10 % longer for it). SQLite's math
functions (``sqrt``) are a build option, so the SQL gives the variance and
:func:`_square_roots` takes its root in NumPy.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from wattwise.common.embedded import EmbeddedStore
from wattwise.errors import (
    DeliveryError,
    StoreUnavailable,
)
from wattwise.optimizer.store.base import AggregatingStore, writing
from wattwise.optimizer.store.frames import (
    CAPPED_BIT,
    CHUNK_ROWS,
    STATE_FIELDS,
    Column,
    Latest,
    SeriesBuilder,
    SeriesSpec,
    scope_filters,
    sort_latest,
)
from wattwise.optimizer.telemetry import Scope, Series


def _tag(tag: str) -> str:
    # tags are our own names ([a-z_]), never user input, so they can sit in the path
    return f"coalesce(json_extract(s.tags_json, '$.{tag}'), '')"


def _aggregate(column: Column) -> str:
    picked = f"CASE WHEN t.field = '{column.field}' THEN t.value END"
    if column.how == "capped_share":
        return f"avg((({picked}) & {CAPPED_BIT}) != 0)"
    return f"{ {'mean': 'avg', 'sum': 'sum', 'max': 'max'}[column.how] }({picked})"


def _keys(spec: SeriesSpec) -> tuple[str, list[str]]:
    """What groups a row (the spec's tag values as ``k0``, ``k1``…, and ``bucket``, whose
    SQL takes the bucket's length twice), and those names."""
    names = [f"k{i}" for i in range(len(spec.tags))]
    tags = "".join(f"{_tag(tag)} AS {name}, " for tag, name in zip(spec.tags, names, strict=True))
    return f"{tags}(t.time_ns / ?) * ? AS bucket", [*names, "bucket"]


def _variance(keys: list[str], samples: str) -> str:
    """Per group of ``samples`` (``SELECT <keys>, t.value AS x …``), the sample variance of
    ``x`` (n − 1), NULL below two values. Two passes: ``x`` less its group's mean first, so
    no two large sums cancel (one pass of sums and sums of squares put a 1.2 mW spread at
    74 W 2e-7 of itself off InfluxDB's answer, past the 1e-9 the stores agree to), then the
    sum of those differences taken back out (the corrected two-pass algorithm). A group of
    equal values is exactly 0, as in InfluxDB."""
    by = ", ".join(keys)
    centred = f"SELECT {by}, x, x - avg(x) OVER (PARTITION BY {by}) AS d FROM ({samples})"
    return (
        f"SELECT {by}, CASE WHEN count(x) < 2 THEN NULL WHEN min(x) = max(x) THEN 0.0"
        " ELSE max(total(d * d) - total(d) * total(d) / count(d), 0.0) / (count(d) - 1)"
        f" END AS variance FROM ({centred}) GROUP BY {by}"
    )


def _square_roots(spec: SeriesSpec, series: Series) -> Series:
    """``series`` with the variances :func:`_variance` gives for ``stddev`` columns rooted."""
    roots = {c.name: np.sqrt(series.values[c.name]) for c in spec.columns if c.how == "stddev"}
    return replace(series, values={**series.values, **roots}) if roots else series


def _scope_sql(filters: dict[str, tuple[str, ...]]) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    for tag, values in sorted(filters.items()):
        sql += f" AND {_tag(tag)} IN ({', '.join('?' * len(values))})"
        params.extend(values)
    return sql, params


def _series_sql(
    spec: SeriesSpec,
    bucket_ns: int,
    start_ns: int,
    end_ns: int,
    filters: dict[str, tuple[str, ...]],
) -> tuple[str, list[object]]:
    """One SELECT of the tag values, bucket start and every column, and its parameters.

    A ``stddev`` column is the variance (rooted by :func:`_square_roots`) of its own
    :func:`_variance` query over its field, joined to the other columns' rows by tags and
    bucket.
    """
    keys_sql, keys = _keys(spec)
    scope_sql, scope_params = _scope_sql(filters)
    params: list[object] = []

    def samples(selected: str, fields: Sequence[str]) -> str:
        """The window's samples of ``fields``, as the keys and ``selected``; their
        parameters go into ``params`` in the order of the SQL text."""
        params.extend([bucket_ns, bucket_ns, spec.measurement, *fields, start_ns, end_ns])
        params.extend(scope_params)
        return (
            f"SELECT {keys_sql}, {selected} FROM series s JOIN samples t ON t.series_id = s.id"
            f" WHERE s.measurement = ? AND t.field IN ({', '.join('?' * len(fields))})"
            f" AND t.time_ns >= ? AND t.time_ns < ?{scope_sql}"
        )

    aggregates = (
        ", ".join(
            f"{_aggregate(c)} AS c{i}" for i, c in enumerate(spec.columns) if c.how != "stddev"
        )
        or "NULL"
    )
    grouped = samples(aggregates, spec.fields) + f" GROUP BY {', '.join(keys)}"
    spreads = [i for i, c in enumerate(spec.columns) if c.how == "stddev"]
    if not spreads:
        return grouped, params
    joins = "".join(
        f" LEFT JOIN ({_variance(keys, samples('t.value AS x', [spec.columns[i].field]))})"
        f" v{i} ON {' AND '.join(f'v{i}.{k} = m.{k}' for k in keys)}"
        for i in spreads
    )
    columns = ", ".join(
        f"v{i}.variance" if c.how == "stddev" else f"m.c{i}" for i, c in enumerate(spec.columns)
    )
    selected = ", ".join(f"m.{k}" for k in keys)
    return f"SELECT {selected}, {columns} FROM ({grouped}) m{joins}", params


class EmbeddedSqliteStore(AggregatingStore):
    """A :class:`~wattwise.optimizer.telemetry.TelemetryStore` on the embedded SQLite file."""

    def __init__(
        self, path: Path, *, busy_timeout_s: float = 5.0, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        try:
            # opening the writer first creates the file and tables if the agent has not yet
            self._writer = EmbeddedStore(path, busy_timeout_s=busy_timeout_s)
            self._db = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (DeliveryError, sqlite3.Error) as e:
            raise StoreUnavailable(f"embedded store {path}: cannot open: {e}") from e
        self._lock = threading.Lock()

    def _series(
        self, spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
    ) -> Series:
        sql, params = _series_sql(
            spec, int(every_s) * 1_000_000_000, start_ns, end_ns, scope_filters(scope, spec.tags)
        )
        n_tags = len(spec.tags)
        builder = SeriesBuilder(spec)
        for chunk in self._chunks(sql, params):
            builder.add(
                [(tuple(row[:n_tags]), int(row[n_tags]), row[n_tags + 1 :]) for row in chunk]
            )
        return _square_roots(spec, builder.series())

    def _latest(self, spec: SeriesSpec, scope: Scope) -> list[Latest]:
        """Each series' newest sample (the state fields written at its newest timestamp)."""
        fields = STATE_FIELDS[spec.measurement]
        scope_sql, scope_params = _scope_sql(scope_filters(scope, spec.tags))
        sql = (
            "SELECT s.id, s.tags_json, s.latest_ns, t.field, t.value FROM series s"
            " LEFT JOIN samples t ON t.series_id = s.id AND t.time_ns = s.latest_ns"
            f" AND t.field IN ({', '.join('?' * len(fields))})"
            f" WHERE s.measurement = ?{scope_sql}"
        )
        heads: dict[int, tuple[dict[str, str], int]] = {}
        values: dict[int, dict[str, object]] = {}
        for chunk in self._chunks(sql, [*fields, spec.measurement, *scope_params]):
            for series_id, tags_json, latest_ns, field, value in chunk:
                heads.setdefault(series_id, (json.loads(tags_json), int(latest_ns)))
                point = values.setdefault(series_id, {})
                if field is not None:
                    point[field] = value
        return sort_latest((tags, time_ns, values[i]) for i, (tags, time_ns) in heads.items())

    def _chunks(self, sql: str, params: Sequence[object]) -> Iterator[list[Any]]:
        """The answer ``chunk_rows`` rows at a time: ``fetchall`` would build every row's
        tuple before the caller converts any, and leave them all for the collector."""
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                while chunk := cursor.fetchmany(self.chunk_rows):
                    yield chunk
            except sqlite3.Error as e:
                raise StoreUnavailable(f"embedded store {self.path}: {e}") from e

    def write(self, lines: Sequence[bytes]) -> None:
        with writing():
            self._writer.write(lines)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._writer.close()

    def __repr__(self) -> str:
        return f"EmbeddedSqliteStore({str(self.path)!r})"
