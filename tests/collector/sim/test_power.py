"""Node power saving in the twin: suspend after idling, standby draw, resume on a job."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from tests.collector.sim.conftest import COMPUTE_BOUND
from wattwise.clock import ManualClock
from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.spec import PowerSaving

SAVING = PowerSaving(suspend_after_s=60.0, standby_w=40.0, resume_s=30.0)
BUSY, IDLE = "sim-r01-n01", "sim-r01-n02"


@pytest.fixture
def pair(clock: ManualClock) -> SimFleet:
    """Two nodes, no random jobs, power saving on; the first node runs one job."""
    spec = FleetSpec.uniform(2, 8, workloads=(), busy_share=0.0, seed=1, power_saving=SAVING)
    fleet = SimFleet(spec, clock)
    fleet.start_job(BUSY, 0, COMPUTE_BOUND)
    return fleet


def _hosts(readings: Sequence[Reading]) -> dict[str, dict[str, FieldValue | None]]:
    return {r.tags["host"]: dict(r.fields) for r in readings if r.measurement == "host"}


def _gpu_hosts(readings: Sequence[Reading]) -> set[str]:
    return {r.tags["host"] for r in readings if r.measurement == "gpu"}


def test_an_idle_node_sleeps_after_suspend_time_and_a_busy_one_never(
    pair: SimFleet, clock: ManualClock
) -> None:
    clock.advance(55.0)
    pair.sync()
    assert pair.truth.power_states() == {BUSY: "awake", IDLE: "awake"}
    clock.advance(10.0)
    pair.sync()
    assert pair.truth.power_states() == {BUSY: "awake", IDLE: "asleep"}
    clock.advance(600.0)
    pair.sync()
    assert pair.truth.power_states()[BUSY] == "awake"


def test_a_sleeping_node_draws_standby_only_and_the_truth_counts_it(clock: ManualClock) -> None:
    spec = FleetSpec.uniform(1, 8, workloads=(), busy_share=0.0, power_saving=SAVING)
    fleet = SimFleet(spec, clock)
    clock.advance(61.0)
    fleet.sync()
    gpu_before, it_before = fleet.truth.energy_j(), fleet.truth.it_energy_j()
    clock.advance(100.0)
    fleet.sync()
    assert fleet.truth.it_energy_j() - it_before == pytest.approx(40.0 * 100.0)
    assert fleet.truth.energy_j() == gpu_before
    assert fleet.nodes.cpu_power_w[0] == 0.0


def test_a_sleeping_node_reports_only_bmc_power_and_inlet(
    pair: SimFleet, clock: ManualClock
) -> None:
    clock.advance(120.0)
    readings = pair.read()
    assert _gpu_hosts(readings) == {BUSY}
    assert set(_hosts(readings)[IDLE]) == {"node_power_w", "inlet_temp_c"}
    assert _hosts(readings)[IDLE]["node_power_w"] == 40.0
    assert "cpu_util_pct" in _hosts(readings)[BUSY]
    cooling = next(r for r in readings if r.measurement == "cooling")
    busy_w = _hosts(readings)[BUSY]["node_power_w"]
    assert cooling.fields["it_power_w"] == pytest.approx(busy_w + 40.0, abs=0.2)  # type: ignore[operator]


def test_a_job_wakes_a_sleeping_node_and_waits_for_it_to_boot(
    pair: SimFleet, clock: ManualClock
) -> None:
    gpus = pair.gpu_source()
    clock.advance(120.0)
    gpus.read()
    pair.start_job(IDLE, 3, COMPUTE_BOUND, length_s=60.0)
    clock.advance(20.0)
    readings = gpus.read()
    assert pair.truth.power_states()[IDLE] == "resuming"
    assert _gpu_hosts(readings) == {BUSY}
    assert pair.truth.work_done(IDLE, 3) == 0.0
    # Booting, the node draws what an idle awake node draws (far above standby).
    assert pair.nodes.node_power_w[1] > 1000.0
    clock.advance(15.0)
    readings = gpus.read()
    assert pair.truth.power_states()[IDLE] == "awake"
    assert pair.truth.work_done(IDLE, 3) > 0.0
    woken = [r for r in readings if r.tags["host"] == IDLE]
    assert len(woken) == 8
    # The driver was loaded at boot: no energy interval to report on the first read.
    assert all(r.fields["energy_j"] is None for r in woken)
    clock.advance(1.0)
    assert all(r.fields["energy_j"] is not None for r in gpus.read())


def test_a_waiting_job_keeps_its_length(pair: SimFleet, clock: ManualClock) -> None:
    clock.advance(120.0)
    pair.start_job(IDLE, 3, COMPUTE_BOUND, length_s=60.0)
    clock.advance(85.0)  # 30 s booting + 55 s running
    pair.sync()
    index = pair.gpu_index(IDLE, 3)
    assert pair.jobs.has_job[index]
    clock.advance(10.0)
    pair.sync()
    assert not pair.jobs.has_job[index]


def test_without_power_saving_an_idle_node_stays_awake(clock: ManualClock) -> None:
    fleet = SimFleet(FleetSpec.uniform(1, 8, workloads=(), busy_share=0.0), clock)
    clock.advance(600.0)
    readings = fleet.read()
    assert fleet.truth.power_states() == {"sim-r01-n01": "awake"}
    assert len(_gpu_hosts(readings)) == 1
    assert not math.isclose(fleet.nodes.node_power_w[0], 40.0)
