"""The data every store test reads: a few simulated minutes of a small fleet.

The readings are generated once, encoded with the agent's encoder, and
:func:`reference_series` / :func:`reference_latest` compute from the same
readings, in plain Python, what a correct store must answer.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import replace
from functools import cache

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.store.frames import CAPPED_BIT, SeriesSpec, scope_filters
from wattwise.optimizer.telemetry import Scope

START_NS = 1_699_999_980 * 1_000_000_000  # a whole minute, so buckets are full
SECONDS = 180
CAPPED_HOST, CAPPED_GPU = "sim-r01-n01", 1
GAP_HOST, GAP_GPU = "sim-r02-n02", 0  # its temp_c is missing during the first minute
NO_GPM_HOST = "sim-r02-n01"  # its GPUs do not measure GPM activity (as before Hopper)
REMAP_HOST, REMAP_GPU = "sim-r02-n02", 1  # a row remapping waits for a reset
SPREAD_HOST, SPREAD_GPU = "sim-r01-n02", 1  # its power_w is planted, minute by minute:
SPREAD_POWER_W = {0: (75.0,) * 60, 1: (300.0, 310.0, 290.0, 320.0), 2: (305.0,)}
"""The planted GPU's ``power_w`` per minute, from the minute's first second on (missing in
its other seconds): equal samples, four known ones, and a single one."""
XIDS = ((40, "sim-r01-n02", "0", 13), (41, "sim-r01-n02", "0", 13), (100, "sim-r02-n01", "1", 79))
"""(second, host, GPU, XID code) of the XID events the fleet reports."""
GPM_SHARES = {
    "sm_active_pct": 0.97,
    "sm_occupancy_pct": 0.45,
    "dram_active_pct": 0.7,
    "tensor_active_pct": 0.6,
    "fp64_active_pct": 0.01,
    "fp32_active_pct": 0.15,
    "fp16_active_pct": 0.05,
}
"""GPM activity planted as these shares of each sample's utilization."""
JOBS = (("sim-r01-n02", "0", "slurm", "4711"), ("sim-r02-n01", "1", "kubernetes", "ml/train-0"))


def _job_readings(fleet_readings: list[Reading], time_ns: int) -> list[Reading]:
    out = []
    for host, gpu, scheduler, job in JOBS:
        labels = next(
            r.tags for r in fleet_readings if r.measurement == "host" and r.tags["host"] == host
        )
        tags = {**labels, "gpu": gpu, "job": job, "scheduler": scheduler}
        second = (time_ns - START_NS) // 1_000_000_000
        fields = {
            "processes": 1,
            "used_mem_bytes": 2**30 * (1 + second % 7),
            "power_w": 300.0 + second,
        }
        out.append(Reading("gpu_job", tags, fields, time_ns))
    return out


def _with_gpm(reading: Reading) -> Reading:
    """GPM activity on every GPU but those of :data:`NO_GPM_HOST`, where it is missing.

    The twin's H100s report their own GPM activity; it is replaced by the planted
    shares so the reference is simple, and dropped on the host that does not measure it.
    """
    if reading.measurement != "gpu":
        return reading
    if reading.tags["host"] == NO_GPM_HOST:
        fields = {k: v for k, v in reading.fields.items() if k not in GPM_SHARES}
        return replace(reading, fields=fields)
    util = reading.fields.get("util_gpu_pct")
    if not isinstance(util, float):
        return reading
    gpm = {name: round(util * share, 3) for name, share in GPM_SHARES.items()}
    return replace(reading, fields={**reading.fields, **gpm})


def _with_health(reading: Reading) -> Reading:
    if reading.measurement != "gpu":
        return reading
    pending = (reading.tags["host"], reading.tags["gpu"]) == (REMAP_HOST, str(REMAP_GPU))
    health = {"remapped_rows_pending": int(pending), "remapped_rows_failed": 0}
    return replace(reading, fields={**reading.fields, **health})


def _xid_readings(tick: list[Reading], second: int, time_ns: int) -> list[Reading]:
    out = []
    for at, host, gpu, code in XIDS:
        if at == second:
            tags = next(
                r.tags
                for r in tick
                if r.measurement == "gpu" and (r.tags["host"], r.tags["gpu"]) == (host, gpu)
            )
            out.append(Reading("gpu_xid", {**tags, "xid": str(code)}, {"count": 1}, time_ns))
    return out


def _with_spread(reading: Reading) -> Reading:
    gpu = (reading.tags.get("host"), reading.tags.get("gpu"))
    if reading.measurement != "gpu" or gpu != (SPREAD_HOST, str(SPREAD_GPU)):
        return reading
    minute, second = divmod((reading.time_ns - START_NS) // 1_000_000_000, 60)
    planted = SPREAD_POWER_W[minute]
    power_w = planted[second] if second < len(planted) else None
    return replace(reading, fields={**reading.fields, "power_w": power_w})


def _with_gap(reading: Reading) -> Reading:
    tags = reading.tags
    if reading.measurement != "gpu" or (tags["host"], tags["gpu"]) != (GAP_HOST, str(GAP_GPU)):
        return reading
    if reading.time_ns >= START_NS + 60 * 1_000_000_000:
        return reading
    return replace(reading, fields={**reading.fields, "temp_c": None})


@cache
def fleet_readings() -> tuple[Reading, ...]:
    """2 racks × 2 nodes × 2 H100 in 2 zones, read every second for three minutes."""
    clock = ManualClock(start_ns=START_NS)
    fleet = SimFleet(FleetSpec.uniform(4, 2, racks=2, zones=2, seed=7), clock)
    readings: list[Reading] = []
    for second in range(SECONDS):
        if second == 30:
            fleet.set_power_limit(CAPPED_HOST, CAPPED_GPU, 200.0)  # sets 0x4 while busy
        if second == 150:
            fleet.set_power_limit(CAPPED_HOST, CAPPED_GPU, 700.0)
        tick = [_with_spread(_with_health(_with_gpm(_with_gap(r)))) for r in fleet.read()]
        readings.extend(tick)
        readings.extend(_xid_readings(tick, second, clock.time_ns()))
        if second % 10 == 0:
            readings.extend(_job_readings(tick, clock.time_ns()))
        clock.advance(1.0)
    fleet.close()
    return tuple(readings)


def fleet_lines() -> list[bytes]:
    return encode_many(fleet_readings())


def _matches(reading: Reading, filters: dict[str, tuple[str, ...]]) -> bool:
    return all(reading.tags.get(tag, "") in values for tag, values in filters.items())


def reference_series(
    spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
) -> dict[tuple[tuple[str, ...], int], dict[str, float]]:
    """(tag values, bucket start) → column → value, computed from the readings."""
    bucket_ns = every_s * 1_000_000_000
    filters = scope_filters(scope, spec.tags)
    samples: dict[tuple[tuple[str, ...], int], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in fleet_readings():
        if r.measurement != spec.measurement or not start_ns <= r.time_ns < end_ns:
            continue
        if not _matches(r, filters):
            continue
        key = (tuple(r.tags.get(t, "") for t in spec.tags), r.time_ns // bucket_ns * bucket_ns)
        for column in spec.columns:
            value = r.fields.get(column.field)
            if value is None:
                continue
            if column.how == "capped_share":
                value = 1.0 if int(value) & CAPPED_BIT else 0.0
            samples[key][column.name].append(float(value))
    out = {}
    for key, columns in samples.items():
        out[key] = {c.name: _aggregate(columns.get(c.name, []), c.how) for c in spec.columns}
    return out


def _aggregate(values: list[float], how: str) -> float:
    if not values:
        return math.nan
    if how == "stddev":  # the sample standard deviation (n − 1), none of one value
        return statistics.stdev(values) if len(values) >= 2 else math.nan
    if how == "max":
        return max(values)
    return sum(values) if how == "sum" else sum(values) / len(values)


def reference_latest(
    spec: SeriesSpec, scope: Scope, key: tuple[str, ...]
) -> dict[tuple[str, ...], Reading]:
    """Each series' newest reading of ``spec``'s measurement, keyed by the ``key`` tags."""
    measurement, tags = spec.measurement, key
    filters = scope_filters(scope, spec.tags)
    newest: dict[tuple[str, ...], Reading] = {}
    for r in fleet_readings():
        if r.measurement == measurement and _matches(r, filters):
            key = tuple(r.tags.get(t, "") for t in tags)
            if key not in newest or r.time_ns >= newest[key].time_ns:
                newest[key] = r
    return newest
