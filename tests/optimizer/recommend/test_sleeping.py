"""Placement on a site that powers idle nodes down: sleeping nodes recognised from telemetry,
their GPUs counted free, and waking one charged its whole idle draw."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.optimizer.twin import record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.spec import PowerSaving
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS
from wattwise.optimizer.evaluation.record import TelemetryRecorder
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.telemetry import HostState

INFERENCE = next(w for w in DEFAULT_WORKLOADS if w.name == "inference")
SAVING = PowerSaving(suspend_after_s=120.0, standby_w=40.0, resume_s=60.0)
PARTLY_BUSY = ("sim-r01-n01", "sim-r02-n01")
SLEEPING = ("sim-r01-n02", "sim-r02-n02")


@pytest.fixture(scope="module")
def site() -> tuple[SimFleet, TelemetryRecorder]:
    """Two racks of two nodes: the first node of each runs 4 of its 8 GPUs, the second has
    nothing to do and is powered down after two minutes; 12 minutes recorded."""
    clock = ManualClock()
    spec = FleetSpec.uniform(
        4, 8, racks=2, workloads=(), busy_share=0.0, seed=2, power_saving=SAVING
    )
    fleet = SimFleet(spec, clock)
    for host in PARTLY_BUSY:
        for gpu in range(4):
            fleet.start_job(host, gpu, INFERENCE)
    return fleet, record(fleet, clock, 720, read_every_s=15)


def _view(
    fleet: SimFleet, rec: TelemetryRecorder, hosts: list[HostState] | None = None
) -> FleetView:
    busy = [k for k, i in fleet.layout.gpu_index.items() if fleet.jobs.has_job[i]]
    end = fleet.clock.time_ns() + 1
    curves = fit_node_power_curves(rec.series("gpu", 0, end), rec.series("host", 0, end))
    return FleetView.build(
        rec.latest_gpus(),
        rec.latest_hosts() if hosts is None else hosts,
        rec.latest_zones(),
        curves=curves,
        busy=busy,
    )


def test_a_powered_down_node_is_recognised_and_its_gpus_are_free(
    site: tuple[SimFleet, TelemetryRecorder],
) -> None:
    fleet, rec = site
    assert {h: s for h, s in fleet.truth.power_states().items() if s == "asleep"} == dict.fromkeys(
        SLEEPING, "asleep"
    )
    view = _view(fleet, rec)
    assert set(view.node_host[view.node_asleep].astype(str)) == set(SLEEPING)
    asleep_gpus = view.node_asleep[view.gpu_node]
    assert asleep_gpus.sum() == 16
    assert not view.gpu_has_job[asleep_gpus].any()
    # Waking costs about what an idle awake node draws (≈ 1.3 kW), less standby.
    wake_w = view.node_wake_w[view.node_asleep]
    assert np.all((wake_w > 1000.0) & (wake_w < 1600.0))
    assert np.all(view.node_wake_w[~view.node_asleep] == 0.0)


def test_an_awake_node_at_standby_level_power_is_not_taken_for_asleep(
    site: tuple[SimFleet, TelemetryRecorder],
) -> None:
    """A BMC misreading 0 W on a node whose agent still reports is not a sleeping node."""
    fleet, rec = site
    hosts = [
        dataclasses.replace(h, node_power_w=0.0) if h.host == PARTLY_BUSY[0] else h
        for h in rec.latest_hosts()
    ]
    view = _view(fleet, rec, hosts)
    assert PARTLY_BUSY[0] not in set(view.node_host[view.node_asleep].astype(str))


def test_placement_prefers_an_awake_partly_used_node_to_waking_one(
    site: tuple[SimFleet, TelemetryRecorder],
) -> None:
    fleet, rec = site
    result = recommend_placement(PlacementRequest(gpus=2), _view(fleet, rec), PlacementSettings())
    ranked = [c.host for c in result.candidates]
    assert set(ranked[:2]) == set(PARTLY_BUSY)
    assert set(ranked[2:]) == set(SLEEPING)
    woken = result.candidates[2]
    assert woken.marginal_it_w > result.candidates[0].marginal_it_w + 1000.0
    assert woken.reason.startswith("wakes this powered-down node")
    assert "wakes" not in result.candidates[0].reason


def test_a_node_is_woken_when_the_awake_ones_rack_budget_leaves_no_room(
    site: tuple[SimFleet, TelemetryRecorder],
) -> None:
    fleet, rec = site
    view = _view(fleet, rec)
    rack_w = {str(r): float(w) for r, w in zip(view.rack_names, view.rack_power_w, strict=True)}
    tight = PlacementSettings(rack_budgets_w={"r01": rack_w["r01"] + 500.0})
    result = recommend_placement(PlacementRequest(gpus=2), view, tight)
    assert [c.host for c in result.candidates] == ["sim-r02-n01", "sim-r02-n02"]
    assert "power budget" in result.rejected["sim-r01-n01"]
    # Waking within a budget: the whole awake draw must fit, not just the job's.
    assert "power budget" in result.rejected["sim-r01-n02"]


def test_a_node_is_woken_when_the_awake_ones_are_too_hot(
    site: tuple[SimFleet, TelemetryRecorder],
) -> None:
    fleet, rec = site
    hosts = [
        dataclasses.replace(h, inlet_temp_c=26.99) if h.host in PARTLY_BUSY else h
        for h in rec.latest_hosts()
    ]
    result = recommend_placement(
        PlacementRequest(gpus=2), _view(fleet, rec, hosts), PlacementSettings()
    )
    assert {c.host for c in result.candidates} == set(SLEEPING)
    assert all(c.reason.startswith("wakes") for c in result.candidates)
