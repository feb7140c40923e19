"""What both stores compute, said once: which tags group a series, how each column
aggregates, how a :class:`Scope` filters, and how rows become frames and states.

The InfluxDB store turns a :class:`SeriesSpec` into InfluxQL, the embedded
store into SQL; both hand their rows to a :class:`SeriesBuilder`, so the shape
of the answer cannot drift between them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from wattwise.optimizer.telemetry import (
    GPU_SERIES_COLUMNS,
    HOST_SERIES_COLUMNS,
    JOB_SERIES_COLUMNS,
    ZONE_SERIES_COLUMNS,
    GpuState,
    HostState,
    Scope,
    Series,
    ZoneState,
)

How = Literal["mean", "sum", "max", "capped_share", "stddev"]
T = TypeVar("T")

CAPPED_BIT = 0x4
"""clock_event_reasons bit of the software power cap."""

CAPPED_SOURCE_FIELD = "clock_event_reasons"


@dataclass(frozen=True)
class Column:
    """One output column: ``how`` applied to ``field`` in each time bucket.

    ``stddev`` is the sample standard deviation (divisor n − 1, as InfluxQL's
    ``STDDEV()``), missing (NaN) in a bucket with fewer than two values.
    """

    name: str
    field: str
    how: How


@dataclass(frozen=True)
class SeriesSpec:
    """One measurement read as a series: grouped by ``tags``, aggregated as ``columns``."""

    measurement: str
    tags: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(column.field for column in self.columns))


def _means(names: Sequence[str]) -> tuple[Column, ...]:
    return tuple(Column(name, name, "mean") for name in names)


_NODE_TAGS = ("host", "cluster", "zone", "rack")
_GPU_MEANS = tuple(
    c
    for c in GPU_SERIES_COLUMNS
    if c not in ("capped_share", "energy_j", "power_peak_w", "power_sd_w")
)

GPU_SPEC = SeriesSpec(
    "gpu",
    ("host", "gpu", "uuid", "model", "cluster", "zone", "rack"),
    (
        *_means(_GPU_MEANS),
        Column("capped_share", CAPPED_SOURCE_FIELD, "capped_share"),
        Column("energy_j", "energy_j", "sum"),
        Column("power_peak_w", "power_instant_w", "max"),
        Column("power_sd_w", "power_w", "stddev"),
    ),
)
HOST_SPEC = SeriesSpec("host", _NODE_TAGS, _means(HOST_SERIES_COLUMNS))
ZONE_SPEC = SeriesSpec("cooling", ("cluster", "zone"), _means(ZONE_SERIES_COLUMNS))
XID_SPEC = SeriesSpec(
    "gpu_xid",
    ("host", "gpu", "uuid", "xid", "cluster", "zone", "rack"),
    (Column("count", "count", "sum"),),
)
JOB_SPEC = SeriesSpec(
    "gpu_job",
    ("host", "gpu", "job", "scheduler", "cluster", "zone", "rack"),
    _means(JOB_SERIES_COLUMNS),
)

GPU_STATE_FIELDS = (
    "power_w",
    "temp_c",
    "util_gpu_pct",
    "util_mem_pct",
    "sm_clock_mhz",
    "power_limit_w",
    "enforced_limit_w",
    "min_limit_w",
    "max_limit_w",
    "default_limit_w",
    "slowdown_temp_c",
    "mem_used_bytes",
    "mem_total_bytes",
    "failed",
    "remapped_rows_pending",
    "remapped_rows_failed",
)
HOST_STATE_FIELDS = ("inlet_temp_c", "node_power_w", "cpu_util_pct")
ZONE_STATE_FIELDS = (
    "supply_temp_c",
    "setpoint_c",
    "return_temp_c",
    "cooling_power_w",
    "it_power_w",
)

STATE_FIELDS = {
    GPU_SPEC.measurement: GPU_STATE_FIELDS,
    HOST_SPEC.measurement: HOST_STATE_FIELDS,
    ZONE_SPEC.measurement: ZONE_STATE_FIELDS,
}
"""The fields a latest state is made of, per measurement."""


def scope_filters(scope: Scope, tags: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Tag → allowed values, for the scope's parts this measurement has tags for.

    ``cooling`` has no ``host`` tag, so a scope of hosts does not narrow zones.
    """
    wanted = {"cluster": scope.clusters, "zone": scope.zones, "host": scope.hosts}
    return {tag: values for tag, values in wanted.items() if values and tag in tags}


Row = tuple[tuple[str, ...], int, Sequence[float | None]]
"""(tag values in the spec's order, bucket start in ns, column values)."""


CHUNK_ROWS = 5_000
"""Rows a store reads and converts at a time. Each conversion into C holds the GIL, so a
request waits at most one chunk's worth (~1 ms) rather than a whole read's (tens of ms
at 1,000 nodes), and the collector never has a read's every row to walk at once."""


class SeriesBuilder:
    """A :class:`Series` assembled from rows added a chunk at a time, in any order.

    Rows end up ordered by tags then time, as :func:`sorted` on ``(tags, time)``
    would order them (stably), but no call sorts or converts all rows in one go:
    each distinct tag tuple gets an integer, only those few thousand tuples are
    sorted in Python, and the rows are ordered by numeric keys.
    """

    def __init__(self, spec: SeriesSpec) -> None:
        self.spec = spec
        self._key_ids: dict[tuple[str, ...], int] = {}
        self._key_id_chunks: list[npt.NDArray[np.int64]] = []
        self._time_chunks: list[npt.NDArray[np.int64]] = []
        self._value_chunks: list[list[npt.NDArray[np.float64]]] = []

    def add(self, rows: Sequence[Row]) -> None:
        """One chunk of rows (a store passes about :data:`CHUNK_ROWS` at a time)."""
        if not rows:
            return
        key_ids = self._key_ids
        ids = [key_ids.setdefault(row[0], len(key_ids)) for row in rows]
        self._key_id_chunks.append(np.array(ids, dtype=np.int64))
        self._time_chunks.append(np.array([row[1] for row in rows], dtype=np.int64))
        values = np.array(
            [[math.nan if v is None else float(v) for v in row[2]] for row in rows],
            dtype=np.float64,
        ).reshape(len(rows), len(self.spec.columns))
        self._value_chunks.append([values[:, i].copy() for i in range(values.shape[1])])

    def series(self) -> Series:
        keys = sorted(self._key_ids)
        rank_of_id = np.empty(len(keys), dtype=np.int64)
        for rank, key in enumerate(keys):
            rank_of_id[self._key_ids[key]] = rank
        time_ns = _joined(self._time_chunks, np.int64)
        rank = rank_of_id[_joined(self._key_id_chunks, np.int64)]
        order = np.lexsort((time_ns, rank))  # stable, like sorted()
        ranked = rank[order]
        return Series(
            time_ns=time_ns[order],
            tags={
                tag: np.array([key[i] for key in keys], dtype=object)[ranked]
                for i, tag in enumerate(self.spec.tags)
            },
            values={
                column.name: _joined([chunk[i] for chunk in self._value_chunks], np.float64)[order]
                for i, column in enumerate(self.spec.columns)
            },
        )


def _joined(chunks: list[npt.NDArray[Any]], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)


def to_series(spec: SeriesSpec, rows: Iterable[Row], chunk_rows: int = CHUNK_ROWS) -> Series:
    """A :class:`Series` ordered by tags then time; ``None`` becomes NaN."""
    builder = SeriesBuilder(spec)
    for chunk in chunked(rows, chunk_rows):
        builder.add(chunk)
    return builder.series()


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


Latest = tuple[Mapping[str, str], int, Mapping[str, object]]
"""(tags, time_ns, fields of the newest sample) of one series."""


def _float(fields: Mapping[str, object], name: str) -> float:
    value = fields.get(name)
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _index(text: str) -> int:
    return int(text) if text.isdigit() else -1


def gpu_state(tags: Mapping[str, str], time_ns: int, fields: Mapping[str, object]) -> GpuState:
    values = {name: _float(fields, name) for name in GPU_STATE_FIELDS if name != "failed"}
    return GpuState(
        host=tags.get("host", ""),
        gpu=_index(tags.get("gpu", "")),
        uuid=tags.get("uuid", ""),
        model=tags.get("model", ""),
        cluster=tags.get("cluster", ""),
        zone=tags.get("zone", ""),
        rack=tags.get("rack", ""),
        time_ns=int(time_ns),
        failed=_float(fields, "failed") == 1.0,
        **values,
    )


def host_state(tags: Mapping[str, str], time_ns: int, fields: Mapping[str, object]) -> HostState:
    return HostState(
        host=tags.get("host", ""),
        cluster=tags.get("cluster", ""),
        zone=tags.get("zone", ""),
        rack=tags.get("rack", ""),
        time_ns=int(time_ns),
        **{name: _float(fields, name) for name in HOST_STATE_FIELDS},
    )


def zone_state(tags: Mapping[str, str], time_ns: int, fields: Mapping[str, object]) -> ZoneState:
    return ZoneState(
        cluster=tags.get("cluster", ""),
        zone=tags.get("zone", ""),
        time_ns=int(time_ns),
        **{name: _float(fields, name) for name in ZONE_STATE_FIELDS},
    )


def sort_latest(latest: Iterable[Latest]) -> list[Latest]:
    """Newest samples ordered by their tags, so both stores list states alike.

    The key is the sorted ``name, value`` pairs joined by NUL, which orders as the
    list of pairs would (NUL sorts before any character a tag can hold) but compares
    as one string: sorting a fleet's lists of tuples held the GIL ~20 ms.
    """
    return sorted(latest, key=lambda item: _tags_key(item[0]))


def _tags_key(tags: Mapping[str, str]) -> str:
    return "\0".join(f"{name}\0{value}" for name, value in sorted(tags.items()))
