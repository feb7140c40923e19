"""Placement on a twin whose site powers idle nodes down: wattwise consolidates small jobs onto
awake nodes and beats spread placement, which wakes sleeping ones, within every rack budget."""

from __future__ import annotations

import pytest

from wattwise.optimizer.evaluation.placement import (
    Spread,
    WattwisePlacement,
    placement_replica,
)
from wattwise.optimizer.evaluation.replica import PolicyRun, Replica
from wattwise.optimizer.evaluation.runner import place_and_run
from wattwise.optimizer.evaluation.scenario import Scenario

SMALL = Scenario.model_validate(
    {
        "name": "small-power-saving",
        "seed": 2,
        "warmup_s": 600,
        "settle_s": 150,
        "duration_s": 300,
        "refresh_s": 150,
        "racks": [
            {"name": "r01", "zone": "z1", "nodes": 3, "budget_w": 40000},
            {"name": "r02", "zone": "z1", "nodes": 3, "budget_w": 40000},
        ],
        "power_saving": {"suspend_after_s": 300, "standby_w": 40, "resume_s": 120},
        "placement": {
            "jobs": 6,
            "gpus_per_job": [1, 2],
            "workload": "inference",
            "background_busy_share": 0.3,
            "background_idle_nodes": 0.35,
            "background_whole_nodes": False,
        },
    }
)


@pytest.fixture(scope="module")
def base() -> Replica:
    return placement_replica(SMALL)


@pytest.fixture(scope="module")
def runs(base: Replica) -> dict[str, tuple[PolicyRun, int, list[str]]]:
    return {c.name: place_and_run(base, c, SMALL) for c in (Spread(), WattwisePlacement())}


def _total_j(run: PolicyRun) -> float:
    return run.meter.it_energy_j + run.meter.cooling_energy_j


def test_nodes_without_background_work_are_asleep_after_warm_up(base: Replica) -> None:
    states = base.fleet.truth.power_states()
    assert "asleep" in states.values() and "awake" in states.values()


def test_regression_wattwise_saves_at_least_10_pct_over_spread_by_not_waking_nodes(
    base: Replica, runs: dict[str, tuple[PolicyRun, int, list[str]]]
) -> None:
    """Before nodes could sleep (and before sleeping nodes were charged their idle draw)
    wattwise and spread differed by under 0.5 %."""
    spread, ours = runs["spread"], runs["wattwise"]
    assert spread[1] == ours[1] == SMALL.placement.jobs
    assert 1.0 - _total_j(ours[0]) / _total_j(spread[0]) >= 0.10
    asleep = {h for h, s in base.fleet.truth.power_states().items() if s == "asleep"}
    assert asleep & set(spread[2])
    assert not asleep & set(ours[2])


def test_no_rack_budget_is_ever_exceeded(
    runs: dict[str, tuple[PolicyRun, int, list[str]]],
) -> None:
    ours = runs["wattwise"][0].meter
    assert ours.rack_samples > 0
    assert ours.rack_over == 0


def test_job_sizes_are_drawn_once_per_seed() -> None:
    sizes = SMALL.placement.job_sizes(SMALL.seed)
    assert sizes == SMALL.placement.job_sizes(SMALL.seed)
    assert set(sizes) <= {1, 2} and len(sizes) == SMALL.placement.jobs


def test_regression_wattwise_places_a100_jobs_in_a_fleet_that_also_has_h100s() -> None:
    """A job of unknown power was judged at the fleet's highest limit (an H100's 700 W) on
    every GPU, so no A100 seemed cool enough and every A100 job went unplaced."""
    racks = [
        {"name": "h01", "zone": "z1", "nodes": 3, "budget_w": 40000},
        {"name": "a01", "zone": "z2", "nodes": 3, "gpu_model": "A100_SXM", "budget_w": 25000},
    ]
    mixed = SMALL.model_validate(
        {
            **SMALL.model_dump(),
            "racks": racks,
            "placement": {**SMALL.placement.model_dump(), "gpu_model": ["H100", "A100"]},
        }
    )
    wanted = [j.gpu_model for j in mixed.placement_jobs()]
    assert "A100" in wanted
    _, placed, hosts = place_and_run(placement_replica(mixed), WattwisePlacement(), mixed)
    assert placed == mixed.placement.jobs
    assert [h.startswith("a01") for h in hosts] == [m == "A100" for m in wanted]
