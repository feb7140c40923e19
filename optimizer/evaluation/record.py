"""Telemetry of a twin replica as the optimizer's stores would return it.

Readings are aggregated per series and time bucket with the stores' own column
specs (:mod:`wattwise.optimizer.store.frames`): means, the software-power-cap
share, sums where the store sums, maxima and sample standard deviations (n − 1,
missing below two samples, as InfluxQL's ``STDDEV()``) — so the models see exactly
what a ``GROUP BY time(1m)`` over the raw points would give them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wattwise.collector.base import Reading
from wattwise.optimizer.store.frames import (
    CAPPED_BIT,
    GPU_SPEC,
    HOST_SPEC,
    JOB_SPEC,
    ZONE_SPEC,
    Row,
    SeriesSpec,
    gpu_state,
    host_state,
    to_series,
    zone_state,
)
from wattwise.optimizer.telemetry import GpuState, HostState, Series, ZoneState

SPECS = (GPU_SPEC, HOST_SPEC, ZONE_SPEC, JOB_SPEC)
Latest = tuple[Mapping[str, str], int, Mapping[str, object]]


@dataclass
class _Bucket:
    sums: list[float]
    """Per column: the sum; the highest value for ``max``; the running mean for ``stddev``."""
    counts: list[int]
    squares: list[float]
    """Per ``stddev`` column: the squared deviations from the running mean, summed
    (Welford's update: no cancellation, and exactly 0 for equal values)."""


@dataclass
class _Measurement:
    spec: SeriesSpec
    buckets: dict[tuple[tuple[str, ...], int], _Bucket] = field(default_factory=dict)
    latest: dict[tuple[str, ...], Latest] = field(default_factory=dict)


class TelemetryRecorder:
    """Aggregates readings into buckets of ``bucket_s`` as they arrive."""

    def __init__(self, bucket_s: int = 60) -> None:
        self.bucket_ns = bucket_s * 1_000_000_000
        self._by_name = {spec.measurement: _Measurement(spec) for spec in SPECS}

    def add(self, readings: Sequence[Reading]) -> None:
        for reading in readings:
            target = self._by_name.get(reading.measurement)
            if target is not None:
                self._add_one(target, reading)

    def _add_one(self, m: _Measurement, r: Reading) -> None:
        tags = tuple(r.tags.get(t, "") for t in m.spec.tags)
        m.latest[tags] = (r.tags, r.time_ns, r.fields)
        key = (tags, r.time_ns - r.time_ns % self.bucket_ns)
        columns = m.spec.columns
        bucket = m.buckets.get(key)
        if bucket is None:
            n = len(columns)
            bucket = m.buckets[key] = _Bucket([0.0] * n, [0] * n, [0.0] * n)
        for i, column in enumerate(columns):
            value = r.fields.get(column.field)
            if value is None:
                continue
            if column.how == "stddev":
                x = float(value)
                bucket.counts[i] += 1
                delta = x - bucket.sums[i]
                bucket.sums[i] += delta / bucket.counts[i]
                bucket.squares[i] += delta * (x - bucket.sums[i])
                continue
            if column.how == "capped_share":
                value = 1.0 if int(value) & CAPPED_BIT else 0.0
            if column.how == "max":
                value = max(float(value), bucket.sums[i]) if bucket.counts[i] else float(value)
                bucket.sums[i] = 0.0
            bucket.sums[i] += float(value)
            bucket.counts[i] += 1

    def series(
        self, measurement: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> Series:
        """Buckets starting in [start_ns, end_ns) (every bucket where a bound is None) of
        ``gpu``, ``host``, ``cooling`` or ``gpu_job``."""
        m = self._by_name[measurement]
        first = -math.inf if start_ns is None else start_ns
        last = math.inf if end_ns is None else end_ns
        rows: list[Row] = [
            (tags, start, _values(m.spec, bucket))
            for (tags, start), bucket in m.buckets.items()
            if first <= start < last
        ]
        return to_series(m.spec, rows)

    def latest_gpus(self) -> list[GpuState]:
        return [gpu_state(*item) for item in self._by_name["gpu"].latest.values()]

    def latest_hosts(self) -> list[HostState]:
        return [host_state(*item) for item in self._by_name["host"].latest.values()]

    def latest_zones(self) -> list[ZoneState]:
        return [zone_state(*item) for item in self._by_name["cooling"].latest.values()]


def _values(spec: SeriesSpec, bucket: _Bucket) -> list[float | None]:
    out: list[float | None] = []
    for column, total, count, squares in zip(
        spec.columns, bucket.sums, bucket.counts, bucket.squares, strict=True
    ):
        if column.how == "stddev":
            out.append(math.sqrt(max(squares, 0.0) / (count - 1)) if count >= 2 else None)
        elif count == 0:
            out.append(None)
        else:
            out.append(total if column.how in ("sum", "max") else total / count)
    return out
