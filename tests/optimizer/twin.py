"""Telemetry from the simulated fleet as the optimizer's stores would return it.

Readings are taken every ``read_every_s`` and averaged per GPU (or node, zone)
and bucket, exactly what a ``GROUP BY time(1m)`` over the raw points gives.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.views import JobView
from wattwise.optimizer.telemetry import GpuState, HostState, Series, ZoneState

REASON_SW_POWER_CAP = 0x4
GPU_TAGS = ("host", "gpu", "uuid", "model", "cluster", "zone", "rack")
HOST_TAGS = ("host", "cluster", "zone", "rack")
ZONE_TAGS = ("cluster", "zone")


class Recorder:
    """Collects readings and aggregates them into Series per measurement."""

    def __init__(self, bucket_s: float = 60.0) -> None:
        self.bucket_ns = int(bucket_s * 1e9)
        self._rows: dict[str, list[Reading]] = defaultdict(list)

    def add(self, readings: Sequence[Reading]) -> None:
        for r in readings:
            self._rows[r.measurement].append(r)

    def series(self, measurement: str, tag_names: Sequence[str]) -> Series:
        rows = self._rows[measurement]
        groups: dict[tuple[int, ...] | tuple[object, ...], list[Reading]] = defaultdict(list)
        for r in rows:
            key = (r.time_ns // self.bucket_ns, *(r.tags.get(t, "") for t in tag_names))
            groups[key].append(r)
        keys = sorted(groups, key=lambda k: (str(k[1:]), k[0]))
        fields = sorted({f for r in rows for f in r.fields})
        values = {f: np.array([_mean(groups[k], f) for k in keys]) for f in fields}
        if measurement == "gpu":
            values["capped_share"] = np.array(
                [
                    np.mean([int(r.fields["clock_event_reasons"] or 0) & 4 > 0 for r in groups[k]])
                    for k in keys
                ]
            )
        tags = {
            t: np.array([k[i + 1] for k in keys], dtype=object) for i, t in enumerate(tag_names)
        }
        times = np.array([int(str(k[0])) * self.bucket_ns for k in keys], dtype=np.int64)
        return Series(time_ns=times, tags=tags, values=values)


def _mean(rows: list[Reading], name: str) -> float:
    vals = [float(v) for r in rows if isinstance(v := r.fields.get(name), int | float)]
    return float(np.mean(vals)) if vals else float("nan")


def record(
    fleet: SimFleet, clock: ManualClock, seconds: float, read_every_s: float = 5.0
) -> Recorder:
    """Run the fleet for ``seconds`` and record every reading."""
    rec = Recorder()
    steps = int(seconds / read_every_s)
    for _ in range(steps):
        clock.advance(read_every_s)
        rec.add(fleet.read())
    return rec


def gpu_states(readings: Sequence[Reading]) -> list[GpuState]:
    """The newest ``gpu`` reading of each GPU as the store's ``latest_gpus`` returns it."""
    latest: dict[tuple[str, str], Reading] = {}
    for r in readings:
        if r.measurement == "gpu":
            latest[(r.tags["host"], r.tags["gpu"])] = r
    return [_gpu_state(r) for r in latest.values()]


def _gpu_state(r: Reading) -> GpuState:
    def f(name: str) -> float:
        v = r.fields.get(name)
        return float(v) if isinstance(v, int | float) else float("nan")

    return GpuState(
        host=r.tags["host"],
        gpu=int(r.tags["gpu"]),
        uuid=r.tags["uuid"],
        model=r.tags["model"],
        cluster=r.tags["cluster"],
        zone=r.tags["zone"],
        rack=r.tags["rack"],
        time_ns=r.time_ns,
        power_w=f("power_w"),
        temp_c=f("temp_c"),
        util_gpu_pct=f("util_gpu_pct"),
        util_mem_pct=f("util_mem_pct"),
        sm_clock_mhz=f("sm_clock_mhz"),
        power_limit_w=f("power_limit_w"),
        enforced_limit_w=f("enforced_limit_w"),
        min_limit_w=f("min_limit_w"),
        max_limit_w=f("max_limit_w"),
        default_limit_w=f("default_limit_w"),
        slowdown_temp_c=f("slowdown_temp_c"),
        mem_used_bytes=f("mem_used_bytes"),
        mem_total_bytes=f("mem_total_bytes"),
        failed=bool(r.fields.get("failed")),
    )


def host_states(readings: Sequence[Reading]) -> list[HostState]:
    """The newest ``host`` reading of each node."""
    latest = {r.tags["host"]: r for r in readings if r.measurement == "host"}
    return [
        HostState(
            host=r.tags["host"],
            cluster=r.tags["cluster"],
            zone=r.tags["zone"],
            rack=r.tags["rack"],
            time_ns=r.time_ns,
            inlet_temp_c=_field(r, "inlet_temp_c"),
            node_power_w=_field(r, "node_power_w"),
            cpu_util_pct=_field(r, "cpu_util_pct"),
        )
        for r in latest.values()
    ]


def zone_states(readings: Sequence[Reading]) -> list[ZoneState]:
    """The newest ``cooling`` reading of each zone."""
    latest = {r.tags["zone"]: r for r in readings if r.measurement == "cooling"}
    return [
        ZoneState(
            cluster=r.tags["cluster"],
            zone=r.tags["zone"],
            time_ns=r.time_ns,
            supply_temp_c=_field(r, "supply_temp_c"),
            setpoint_c=_field(r, "setpoint_c"),
            return_temp_c=_field(r, "return_temp_c"),
            cooling_power_w=_field(r, "cooling_power_w"),
            it_power_w=_field(r, "it_power_w"),
        )
        for r in latest.values()
    ]


def _field(r: Reading, name: str) -> float:
    v = r.fields.get(name)
    return float(v) if isinstance(v, int | float) else float("nan")


JOB_TAGS = ("host", "gpu", "job", "scheduler", "cluster", "zone", "rack")


@dataclass(frozen=True)
class Recorded:
    """A fleet and what its stores would hold after :func:`walked_setpoint`."""

    fleet: SimFleet
    gpus: Series
    hosts: Series
    zones: Series
    jobs: Series
    readings: tuple[Reading, ...]


@cache
def walked_setpoint(minutes: int = 40) -> Recorded:
    """8 nodes × 4 H100 in 4 racks and 2 zones, read every 10 s; zone z1's setpoint is
    raised by 1 °C every 10 minutes (so the COP gain can be seen), z2's is left alone."""
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(8, 4, racks=4, zones=2, seed=5, setpoint_c=19.0), clock)
    rec = Recorder()
    jobs = JobView(fleet)
    for step in range(minutes * 6):
        if step and step % 60 == 0:
            fleet.set_setpoint("z1", 19.0 + step // 60)
        clock.advance(10.0)
        rec.add(fleet.read())
        rec.add(jobs.read())
    return Recorded(
        fleet,
        rec.series("gpu", GPU_TAGS),
        rec.series("host", HOST_TAGS),
        rec.series("cooling", ZONE_TAGS),
        rec.series("gpu_job", JOB_TAGS),
        tuple(fleet.read()),
    )
