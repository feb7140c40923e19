"""Placement on the fleet twin: only free GPUs, budgets never exceeded, constraints honoured,
ranked by marginal power, also on a 1,000-node fleet."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.optimizer.twin import (
    gpu_states,
    host_states,
    record,
    zone_states,
)
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.recommend.fleet_view import PSU_EFFICIENCY, FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.telemetry import GpuState, HostState, ZoneState

States = tuple[SimFleet, list[GpuState], list[HostState], list[ZoneState], FleetView]


@pytest.fixture(scope="module")
def twin() -> States:
    clock = ManualClock()
    spec = FleetSpec.uniform(8, 4, racks=4, zones=2, seed=11, busy_share=0.5)
    fleet = SimFleet(spec, clock)
    rec = record(fleet, clock, 1200, read_every_s=10)
    gpus, hosts = rec.series("gpu"), rec.series("host")
    zones = rec.series("cooling")
    readings = fleet.read()
    g, h, z = gpu_states(readings), host_states(readings), zone_states(readings)
    view = FleetView.build(
        g,
        h,
        z,
        curves=fit_node_power_curves(gpus, hosts),
        gpu_thermal=fit_gpu_thermal(gpus, hosts),
        inlets=fit_inlet_models(hosts, zones),
        cooling=fit_cooling_models(zones),
    )
    return fleet, g, h, z, view


def _rack_power_w(hosts: list[HostState]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for h in hosts:
        out[h.rack] += h.node_power_w
    return out


def test_only_free_gpus_are_offered(twin: States) -> None:
    fleet, gpus, _, _, view = twin
    result = recommend_placement(PlacementRequest(gpus=1), view, PlacementSettings())
    assert result.candidates
    busy = {(g.host, g.gpu) for g in gpus if g.util_gpu_pct >= 5.0}
    for c in result.candidates:
        for gpu in c.gpus:
            assert (c.host, gpu) not in busy
            assert not fleet.jobs.has_job[fleet.gpu_index(c.host, gpu)]


def test_candidates_are_ranked_by_marginal_it_plus_cooling_power(twin: States) -> None:
    _, _, _, _, view = twin
    result = recommend_placement(PlacementRequest(gpus=1), view, PlacementSettings())
    totals = [c.marginal_it_w + c.marginal_cooling_w for c in result.candidates]
    assert totals == sorted(totals)
    assert all(c.marginal_cooling_w > 0 and c.marginal_it_w > 0 for c in result.candidates)
    assert all("W IT" in c.reason and "below slowdown" in c.reason for c in result.candidates)


def test_node_without_enough_free_gpus_is_rejected_with_the_reason(twin: States) -> None:
    _, _, _, _, view = twin
    result = recommend_placement(PlacementRequest(gpus=5), view, PlacementSettings())
    assert result.candidates == ()
    assert set(result.rejected) == set(view.node_host.astype(str))
    assert all("fewer than 5 free GPUs" in why for why in result.rejected.values())


def test_zone_rack_and_excluded_hosts_are_honoured(twin: States) -> None:
    _, _, _, _, view = twin
    any_fit = recommend_placement(PlacementRequest(gpus=1), view, PlacementSettings())
    first = any_fit.candidates[0]
    request = PlacementRequest(
        gpus=1, zone=first.zone, rack=first.rack, exclude_hosts=(first.host,)
    )
    result = recommend_placement(request, view, PlacementSettings())
    assert all(c.zone == first.zone and c.rack == first.rack for c in result.candidates)
    assert first.host not in {c.host for c in result.candidates}
    assert "excluded" in result.rejected[first.host]


def test_a_rack_near_its_budget_is_passed_over(twin: States) -> None:
    _, _, hosts, _, view = twin
    rack_power = _rack_power_w(hosts)
    first = recommend_placement(PlacementRequest(gpus=1), view, PlacementSettings()).candidates[0]
    tight = PlacementSettings(rack_budgets_w={first.rack: rack_power[first.rack] + 50.0})
    result = recommend_placement(PlacementRequest(gpus=1), view, tight)
    assert first.rack not in {c.rack for c in result.candidates}
    assert "power budget" in result.rejected[first.host]


def test_a_hot_inlet_rules_its_node_out(twin: States) -> None:
    _, gpus, hosts, zones, view = twin
    first = recommend_placement(PlacementRequest(gpus=1), view, PlacementSettings()).candidates[0]
    hot = [dataclasses.replace(h, inlet_temp_c=26.99) if h.rack == first.rack else h for h in hosts]
    result = recommend_placement(
        PlacementRequest(gpus=1), FleetView.build(gpus, hot, zones), PlacementSettings()
    )
    assert result.candidates and all(c.rack != first.rack for c in result.candidates)
    assert result.rejected[first.host] == "inlet would pass 27 °C"


@settings(max_examples=40, deadline=None)
@given(
    budgets=st.lists(st.floats(0, 40_000), min_size=4, max_size=4),
    capacity=st.floats(0, 200_000),
    gpus=st.integers(1, 4),
    power_w=st.floats(100, 700),
)
def test_no_candidate_ever_pushes_a_rack_or_zone_past_its_budget(
    twin: States, budgets: list[float], capacity: float, gpus: int, power_w: float
) -> None:
    _, _, hosts, zones, view = twin
    chosen = PlacementSettings(
        rack_budgets_w=dict(zip(["r01", "r02", "r03", "r04"], budgets, strict=True)),
        zone_cooling_capacity_w={"z1": capacity},
    )
    request = PlacementRequest(gpus=gpus, expected_power_w=power_w)
    result = recommend_placement(request, view, chosen)
    rack_power = _rack_power_w(hosts)
    z1_it = next(z.it_power_w for z in zones if z.zone == "z1")
    for c in result.candidates:
        added = max(c.marginal_it_w, gpus * power_w / PSU_EFFICIENCY)
        assert rack_power[c.rack] + added <= chosen.rack_budgets_w[c.rack] + 1e-6
        assert c.rack_headroom_w is not None and c.rack_headroom_w >= 0
        if c.zone == "z1":
            assert z1_it + added <= capacity + 1e-6


def test_request_needs_at_least_one_gpu_and_one_profile_name() -> None:
    with pytest.raises(ValidationError):
        PlacementRequest(gpus=0)
    with pytest.raises(ValidationError):
        PlacementRequest(gpus=1, workload_class="training", job="4711")


def _big_fleet(
    nodes: int,
    per_node: int = 8,
    model: str = "NVIDIA H100 80GB HBM3",
    max_limit_w: float = 700.0,
    prefix: str = "n",
) -> list[GpuState]:
    rng = np.random.default_rng(0)
    util = np.where(rng.random(nodes * per_node) < 0.7, 90.0, 0.0)
    return [
        GpuState(
            host=f"{prefix}{n:04d}", gpu=i, uuid="", model=model, cluster="c",
            zone=f"z{n % 4}", rack=f"r{n // 20:03d}", time_ns=0, power_w=90.0 + 6 * u,
            temp_c=40.0 + u / 3, util_gpu_pct=u, util_mem_pct=0.0, sm_clock_mhz=1980.0,
            power_limit_w=max_limit_w, enforced_limit_w=max_limit_w, min_limit_w=200.0,
            max_limit_w=max_limit_w, default_limit_w=max_limit_w, slowdown_temp_c=87.0,
            mem_used_bytes=0.0, mem_total_bytes=80e9, failed=False,
        )
        for n in range(nodes)
        for i, u in enumerate(util[n * per_node : (n + 1) * per_node])
    ]  # fmt: skip


def test_a_job_of_unknown_power_is_judged_at_each_gpus_own_limit_not_the_fleets_highest() -> None:
    # A fleet of H100s (700 W) and A100s (400 W): a job that states no power was once
    # heated at 700 W on every GPU, so no A100 ever seemed cool enough to take it.
    a100 = _big_fleet(4, model="NVIDIA A100-SXM4-80GB", max_limit_w=400.0, prefix="a")
    mixed = FleetView.build(a100 + _big_fleet(4), [], [])
    alone = FleetView.build(a100, [], [])
    request = PlacementRequest(gpus=1, gpu_model="A100")
    in_mixed = recommend_placement(request, mixed, PlacementSettings()).candidates
    by_itself = recommend_placement(request, alone, PlacementSettings()).candidates
    assert in_mixed and [c.host for c in in_mixed] == [c.host for c in by_itself]
    assert [c.thermal_headroom_c for c in in_mixed] == [c.thermal_headroom_c for c in by_itself]
    hotter = recommend_placement(
        PlacementRequest(gpus=1, gpu_model="A100", expected_power_w=700.0),
        mixed,
        PlacementSettings(),
    ).candidates
    # a stated 700 W is still bounded by the A100's 400 W limit
    assert [c.thermal_headroom_c for c in hotter] == [c.thermal_headroom_c for c in in_mixed]


def test_placement_on_8000_gpus_offers_ten_free_candidates_within_budget() -> None:
    # Its speed is measured by bench/api_latency.py (docs/benchmarks.md), not asserted here.
    gpus = _big_fleet(1000)
    view = FleetView.build(gpus, [], [])
    budgets = PlacementSettings(rack_budgets_w={f"r{r:03d}": 150_000.0 for r in range(50)})
    result = recommend_placement(PlacementRequest(gpus=2, expected_power_w=500.0), view, budgets)
    busy = {(g.host, g.gpu) for g in gpus if g.util_gpu_pct >= 5.0}
    assert len(result.candidates) == 10
    for c in result.candidates:
        assert len(c.gpus) == 2 and not {(c.host, g) for g in c.gpus} & busy
        assert c.rack_headroom_w is not None and c.rack_headroom_w >= 0
