"""The twin's GPU faults: XIDs with their consequences, ECC errors, and physics left alone."""

from __future__ import annotations

import numpy as np

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.faults import FaultSpec


def _fleet(**faults: float) -> tuple[SimFleet, ManualClock]:
    clock = ManualClock()
    spec = FleetSpec.uniform(2, 4, seed=9, faults=FaultSpec(**faults))
    return SimFleet(spec, clock), clock


def _gpu(readings: list[Reading], host: str, gpu: int) -> Reading:
    return next(
        r
        for r in readings
        if r.measurement == "gpu" and (r.tags["host"], r.tags["gpu"]) == (host, str(gpu))
    )


def _xids(readings: list[Reading]) -> dict[tuple[str, str, str], int]:
    return {
        (r.tags["host"], r.tags["gpu"], r.tags["xid"]): int(r.fields["count"] or 0)
        for r in readings
        if r.measurement == "gpu_xid"
    }


def test_a_double_bit_error_counts_and_schedules_a_remap_that_a_reset_applies() -> None:
    fleet, clock = _fleet()
    source = fleet.gpu_source()
    host = fleet.layout.node_tags[0]["host"]
    source.read()
    fleet.raise_xid(host, 2, 48)
    clock.advance(1.0)
    readings = list(source.read())
    assert _xids(readings) == {(host, "2", "48"): 1, (host, "2", "63"): 1}
    sick = _gpu(readings, host, 2).fields
    assert (sick["ecc_uncorrected_total"], sick["remapped_rows_pending"]) == (1, 1)
    assert _gpu(readings, host, 1).fields["remapped_rows_pending"] == 0
    clock.advance(1.0)
    assert _xids(list(source.read())) == {}  # each event is read once
    fleet.reset_gpu(host, 2)
    clock.advance(1.0)
    after = _gpu(list(source.read()), host, 2).fields
    assert (after["remapped_rows_pending"], after["remapped_rows_uncorrectable"]) == (0, 1)


def test_a_gpu_that_fell_off_the_bus_reads_as_failed_until_reset() -> None:
    fleet, clock = _fleet()
    source = fleet.gpu_source()
    host = fleet.layout.node_tags[1]["host"]
    fleet.raise_xid(host, 0, 79)
    clock.advance(1.0)
    readings = list(source.read())
    assert _xids(readings) == {(host, "0", "79"): 1}
    assert _gpu(readings, host, 0).fields == {"failed": 1}
    assert _gpu(readings, host, 1).fields["failed"] == 0
    fleet.reset_gpu(host, 0)
    clock.advance(1.0)
    assert _gpu(list(source.read()), host, 0).fields["failed"] == 0


def test_random_faults_come_at_their_rates_and_leave_the_physics_alone() -> None:
    quiet, quiet_clock = _fleet()
    noisy, noisy_clock = _fleet(corrected_ecc_per_gpu_hour=30.0, xids_per_gpu_day=200.0)
    quiet_source, noisy_source = quiet.gpu_source(), noisy.gpu_source()
    events = 0
    for _ in range(60):
        quiet_clock.advance(60.0)
        noisy_clock.advance(60.0)
        q, n = list(quiet_source.read()), list(noisy_source.read())
        events += sum(_xids(n).values())
        assert _xids(q) == {}
    power = [r.fields.get("power_w") for r in q if r.measurement == "gpu"]
    noisy_power = [r.fields.get("power_w") for r in n if r.measurement == "gpu"]
    lost = [r.fields == {"failed": 1} for r in n if r.measurement == "gpu"]
    assert [p for p, gone in zip(power, lost, strict=True) if not gone] == [
        p for p, gone in zip(noisy_power, lost, strict=True) if not gone
    ]  # same seed, same physics
    corrected = int(np.sum(noisy.faults.ecc_corrected))
    assert 180 < corrected < 300  # 8 GPUs × 1 h × 30 per GPU-hour = 240 expected
    # 8 GPUs × 1 h × 200/day ≈ 67 events expected (48/94/95 add a 63 each)
    assert 30 < events < 140
