"""Telemetry from the simulated fleet as the optimizer's stores would return it.

Readings are taken every ``read_every_s`` and recorded by the evaluation's
:class:`TelemetryRecorder`: aggregated per series and 1-minute bucket with the
stores' own column specs, exactly what a ``GROUP BY time(1m)`` over the raw
points gives, and the newest reading of each series as the stores' states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.views import JobView
from wattwise.optimizer.evaluation.record import TelemetryRecorder
from wattwise.optimizer.telemetry import GpuState, HostState, Series, ZoneState


def record(
    fleet: SimFleet,
    clock: ManualClock,
    seconds: float,
    read_every_s: float = 5.0,
    into: TelemetryRecorder | None = None,
) -> TelemetryRecorder:
    """Run the fleet for ``seconds`` and record every reading (after those ``into`` holds)."""
    rec = TelemetryRecorder() if into is None else into
    for _ in range(int(seconds / read_every_s)):
        clock.advance(read_every_s)
        rec.add(fleet.read())
    return rec


def latest(readings: Sequence[Reading]) -> TelemetryRecorder:
    """``readings`` recorded: their states are what the stores' ``latest_*`` return."""
    rec = TelemetryRecorder()
    rec.add(readings)
    return rec


def gpu_states(readings: Sequence[Reading]) -> list[GpuState]:
    return latest(readings).latest_gpus()


def host_states(readings: Sequence[Reading]) -> list[HostState]:
    return latest(readings).latest_hosts()


def zone_states(readings: Sequence[Reading]) -> list[ZoneState]:
    return latest(readings).latest_zones()


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
    rec = TelemetryRecorder()
    jobs = JobView(fleet)
    for step in range(minutes * 6):
        if step and step % 60 == 0:
            fleet.set_setpoint("z1", 19.0 + step // 60)
        clock.advance(10.0)
        rec.add(fleet.read())
        rec.add(jobs.read())
    return Recorded(
        fleet,
        rec.series("gpu"),
        rec.series("host"),
        rec.series("cooling"),
        rec.series("gpu_job"),
        tuple(fleet.read()),
    )
