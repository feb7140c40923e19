from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.collector.sim.conftest import COMPUTE_BOUND, MEMORY_BOUND
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.dvfs import REASON_SW_POWER_CAP
from wattwise.collector.sim.spec import MAX_NODES_PER_RACK
from wattwise.common.lineproto import encode
from wattwise.errors import ConfigError


def _run(seed: int, seconds: int = 30) -> list[object]:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(4, 4, racks=2, seed=seed, idle_gap_mean_s=5.0), clock)
    out: list[object] = []
    for _ in range(seconds):
        clock.advance(1.0)
        out.append([(r.measurement, dict(r.tags), dict(r.fields)) for r in fleet.read()])
    return out


def test_same_seed_gives_identical_readings_and_another_seed_does_not() -> None:
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)


def test_power_never_exceeds_the_enforced_limit() -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(8, 8, racks=2, seed=3, idle_gap_mean_s=10.0), clock)
    rng = np.random.default_rng(0)
    for host, gpu in fleet.layout.gpu_index:
        fleet.set_power_limit(host, gpu, float(rng.uniform(200.0, 700.0)))
    clock.advance(2.0)  # let the 1 s average forget the power drawn under the old limits
    for _ in range(60):
        clock.advance(1.0)
        for r in fleet.gpu_source().read():
            limit = r.fields["enforced_limit_w"]
            assert isinstance(limit, float)
            assert r.fields["power_instant_w"] <= limit + 1e-6  # type: ignore[operator]
            assert r.fields["power_w"] <= limit + 1e-6  # type: ignore[operator]


def test_capping_lowers_clock_and_power_and_raises_sw_power_cap(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    gpus = quiet_node.gpu_source()
    clock.advance(30.0)
    before = gpus.read()[0].fields
    quiet_node.set_power_limit(host, 0, 350.0)
    clock.advance(5.0)
    after = gpus.read()[0].fields
    assert after["sm_clock_mhz"] < before["sm_clock_mhz"]  # type: ignore[operator]
    assert after["power_w"] <= 350.0 < before["power_w"]  # type: ignore[operator]
    assert after["power_limit_w"] == after["enforced_limit_w"] == 350.0
    assert after["clock_event_reasons"] & REASON_SW_POWER_CAP  # type: ignore[operator]


def test_memory_bound_work_slows_less_than_compute_bound_under_the_same_cap(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    quiet_node.start_job(host, 1, MEMORY_BOUND)
    clock.advance(10.0)
    quiet_node.sync()
    full = [quiet_node.truth.throughput(host, g) for g in (0, 1)]
    for g in (0, 1):
        quiet_node.set_power_limit(host, g, 450.0)
    clock.advance(10.0)
    quiet_node.sync()
    capped = [quiet_node.truth.throughput(host, g) for g in (0, 1)]
    compute_kept, memory_kept = capped[0] / full[0], capped[1] / full[1]
    # 450 W is below what the matmul draws and above what the copy draws at full clock.
    assert compute_kept < 0.75
    assert memory_kept > 0.99


def test_energy_is_the_exact_integral_of_true_power(clock: ManualClock) -> None:
    fleet = SimFleet(FleetSpec.uniform(2, 4, seed=5, idle_gap_mean_s=3.0), clock)
    gpus = fleet.gpu_source()
    start_j = fleet.truth.energy_j()
    read_j = 0.0
    for step_s in (1.0, 1.0, 0.3, 2.7, 1.0, 10.0, 1.0):
        clock.advance(step_s)
        readings = gpus.read()
        for r in readings:
            assert r.fields["energy_interval_s"] == pytest.approx(step_s)
            read_j += r.fields["energy_j"]  # type: ignore[operator]
        if step_s == 1.0:
            # Over exactly one second the energy equals the 1 s average power.
            for r in readings:
                assert r.fields["energy_j"] == pytest.approx(r.fields["power_w"], rel=1e-9)
    assert read_j == pytest.approx(fleet.truth.energy_j() - start_j, rel=1e-12)


def test_two_reads_at_the_same_instant_report_energy_missing_not_zero(clock: ManualClock) -> None:
    fleet = SimFleet(FleetSpec.uniform(1, 2), clock)
    clock.advance(1.0)
    fleet.read()
    again = fleet.read()
    assert all(r.fields.get("energy_j", "absent") is None for r in again if r.measurement == "gpu")


def _settled_zone(setpoint_c: float) -> tuple[float, float]:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(8, 8, racks=2, seed=11), clock)
    fleet.set_setpoint("z1", setpoint_c)
    clock.advance(900.0)
    (cooling,) = [r for r in fleet.node_source().read() if r.measurement == "cooling"]
    inlet = float(np.mean(list(fleet.truth.inlet_temps().values())))
    return inlet, float(cooling.fields["cooling_power_w"])  # type: ignore[arg-type]


def test_higher_setpoint_raises_inlet_and_lowers_cooling_power() -> None:
    cold_inlet, cold_cooling = _settled_zone(18.0)
    warm_inlet, warm_cooling = _settled_zone(27.0)
    assert warm_inlet - cold_inlet == pytest.approx(9.0, abs=1.0)
    assert warm_cooling < 0.85 * cold_cooling


def test_recirculation_makes_busy_racks_and_high_slots_warmer(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    clock.advance(60.0)
    quiet_node.sync()
    host = quiet_node.layout.node_tags[0]["host"]
    idle_inlet = quiet_node.truth.inlet_temps()[host]
    for g in range(8):
        quiet_node.start_job(host, g, COMPUTE_BOUND)
    clock.advance(60.0)
    quiet_node.sync()
    assert quiet_node.truth.inlet_temps()[host] > idle_inlet + 0.2
    tall = SimFleet(FleetSpec.uniform(8, 1, seed=2, workloads=(), busy_share=0.0), clock)
    inlets = list(tall.truth.inlet_temps().values())
    assert inlets[-1] > inlets[0]


def test_set_power_limit_outside_the_model_range_is_a_config_error(quiet_node: SimFleet) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    with pytest.raises(ConfigError):
        quiet_node.set_power_limit(host, 0, 150.0)
    with pytest.raises(ConfigError):
        quiet_node.set_power_limit(host, 0, 701.0)
    with pytest.raises(ConfigError):
        quiet_node.set_power_limit(host, 8, 300.0)
    with pytest.raises(ConfigError):
        quiet_node.set_setpoint("z1", 40.0)
    with pytest.raises(ConfigError):
        quiet_node.set_setpoint("nowhere", 22.0)


def test_oracle_answers_without_changing_the_fleet(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    clock.advance(5.0)
    quiet_node.sync()
    full_rate, full_w = quiet_node.truth.at_power_limit(host, 0, 700.0)
    half_rate, half_w = quiet_node.truth.at_power_limit(host, 0, 350.0)
    assert half_w <= 350.0 < full_w
    assert half_rate < full_rate
    assert quiet_node.limit_w[0] == 700.0
    warmer = quiet_node.truth.inlet_temps_at_setpoint("z1", 25.0)
    assert warmer[host] == pytest.approx(quiet_node.truth.inlet_temps()[host] + 5.0, abs=0.01)


def test_ten_thousand_gpus_step_with_finite_state_and_limits_held() -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1250, 8, racks=125, zones=5, seed=9), clock)
    for _ in range(10):
        clock.advance(1.0)
        fleet.sync()
    assert fleet.layout.gpu_count == 10_000
    assert np.all(np.isfinite(fleet.temps.die_c))
    assert np.all(fleet.op.power_w <= fleet.limit_w + 1e-6)
    assert 0.3 < np.mean(fleet.op.busy > 0) < 1.0


def _non_finite_fields(readings: Sequence[Reading]) -> list[tuple[str, str, str]]:
    """(measurement, host, field) of every float field that is NaN or infinite."""
    return [
        (r.measurement, r.tags.get("host", ""), name)
        for r in readings
        for name, value in r.fields.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]


def test_fifty_node_racks_with_endless_idle_gaps_never_yield_nan_power() -> None:
    """The reported fleet: 400 GPUs per rack drove fan power → rack power → recirculation →
    inlet round a loop with gain > 1; the unbounded fan cube ran it to inf, then NaN."""
    spec = FleetSpec.uniform(100, 8, racks=2, zones=2, seed=11, busy_share=0.5, idle_gap_mean_s=1e6)
    clock = ManualClock()
    fleet = SimFleet(spec, clock)
    for _ in range(5):
        clock.advance(1.0)
        readings = fleet.read()
        assert _non_finite_fields(readings) == []
        assert all(encode(r) is not None for r in readings)
    # The loop settles with the fans at full speed: hot, as racks this dense would be.
    assert float(np.max(fleet.nodes.inlet_c)) < 60.0


@settings(max_examples=25, deadline=None)
@given(
    racks=st.integers(1, 3),
    nodes_per_rack=st.integers(1, MAX_NODES_PER_RACK),
    gpus_per_node=st.integers(1, 16),
    zones_share=st.floats(0.0, 1.0),
    busy_share=st.floats(0.0, 1.0),
    idle_gap_mean_s=st.sampled_from([0.5, 5.0, 120.0, 1e6, 1e300, math.inf]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_float_field_of_any_small_fleet_is_finite_or_missing(
    racks: int,
    nodes_per_rack: int,
    gpus_per_node: int,
    zones_share: float,
    busy_share: float,
    idle_gap_mean_s: float,
    seed: int,
) -> None:
    # Racks as full as FleetSpec allows: dense racks are where the recirculation loop can run away.
    spec = FleetSpec.uniform(
        racks * nodes_per_rack,
        gpus_per_node,
        racks=racks,
        zones=max(1, round(zones_share * racks)),
        seed=seed,
        busy_share=busy_share,
        idle_gap_mean_s=idle_gap_mean_s,
    )
    clock = ManualClock()
    fleet = SimFleet(spec, clock)
    for _ in range(4):
        clock.advance(1.0)
        assert _non_finite_fields(fleet.read()) == []
