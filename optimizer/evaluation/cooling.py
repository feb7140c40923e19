"""Cooling setpoints on the twin: a fixed 18 °C, wattwise, and the oracle.

The oracle is the warmest constant setpoint per zone (0.5 °C grid in 18–27 °C)
whose realized run keeps 99.9 % of that zone's inlet samples at or below 27 °C,
found by bisection over full runs of the twin: cooling energy falls and inlet
temperatures rise monotonically with the setpoint, and zones do not share air,
so every bisection round runs each zone at its own candidate in one replica.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.recommend.cooling import recommend_cooling
from wattwise.optimizer.recommend.settings import CoolingSettings

from .replica import INLET_LIMIT_C, PolicyRun, Replica, run_policy
from .results import ExperimentResult, Target, policy_result
from .scenario import Scenario

GRID_C = 0.5
LOWEST_C, HIGHEST_C = 18.0, 27.0
INLET_SHARE = 0.999


@dataclass
class FixedSetpoints:
    """Every zone held at its own constant setpoint (the baseline, and the oracle's runs)."""

    setpoints_c: dict[str, float]
    name: str = "fixed 18 °C"

    def act(self, replica: Replica) -> None:
        for zone, celsius in self.setpoints_c.items():
            if replica.fleet.setpoint_c[replica.fleet.layout.zones.index(zone)] != celsius:
                replica.fleet.set_setpoint(zone, celsius)

    def tick(self, replica: Replica) -> None:
        """Constant."""


@dataclass
class WattwiseCooling:
    """wattwise: the cooling recommendation from the latest telemetry, applied each refresh."""

    settings: CoolingSettings = field(default_factory=CoolingSettings)
    name: str = "wattwise"

    def act(self, replica: Replica) -> None:
        t = replica.telemetry
        assert t is not None, "wattwise needs the replica's telemetry"
        for rec in recommend_cooling(
            t.latest_zones(), t.latest_hosts(), t.latest_gpus(), self.settings
        ):
            replica.fleet.set_setpoint(rec.zone, rec.recommended_setpoint_c)

    def tick(self, replica: Replica) -> None:
        """Setpoints change only at refreshes."""


def zone_inlet_share(run: PolicyRun, replica: Replica, zone: str) -> float:
    nodes = replica.fleet.layout.zone_of_node == replica.fleet.layout.zones.index(zone)
    samples = np.concatenate([s[nodes] for s in run.meter.inlet_c])
    return float(np.mean(samples <= INLET_LIMIT_C + 1e-9))


def oracle_setpoints(
    base: Replica, scenario: Scenario, on_step: Callable[[], None] | None = None
) -> tuple[dict[str, float], PolicyRun]:
    """Bisection per zone over the grid; returns the setpoints and the oracle's own run."""
    zones = base.fleet.layout.zones
    low = dict.fromkeys(zones, 0)  # grid index known feasible (18 °C is the floor)
    high = dict.fromkeys(zones, round((HIGHEST_C - LOWEST_C) / GRID_C) + 1)
    while any(high[z] - low[z] > 1 for z in zones):
        trial = {z: (low[z] + high[z]) // 2 if high[z] - low[z] > 1 else low[z] for z in zones}
        run = run_policy(base, FixedSetpoints(_celsius(trial)), scenario)
        for z in zones:
            if high[z] - low[z] > 1:
                feasible = zone_inlet_share(run, base, z) >= INLET_SHARE
                low[z], high[z] = (trial[z], high[z]) if feasible else (low[z], trial[z])
        if on_step is not None:
            on_step()
    chosen = _celsius(low)
    return chosen, run_policy(base, FixedSetpoints(chosen, name="oracle"), scenario)


def _celsius(index: dict[str, int]) -> dict[str, float]:
    return {z: LOWEST_C + GRID_C * i for z, i in index.items()}


def judge_cooling(runs: dict[str, PolicyRun], setpoints: dict[str, str]) -> ExperimentResult:
    ref = runs["fixed 18 °C"].meter
    results = []
    for name, run in runs.items():
        m = run.meter
        results.append(
            policy_result(
                run,
                saving_pct=100.0 * (1.0 - m.cooling_energy_j / ref.cooling_energy_j),
                slowdown_pct=100.0 * (ref.work_gpu_s / max(m.work_gpu_s, 1e-9) - 1.0),
                detail={
                    "total_energy_saving_pct": 100.0
                    * (
                        1.0
                        - (m.it_energy_j + m.cooling_energy_j)
                        / (ref.it_energy_j + ref.cooling_energy_j)
                    )
                },
                setting=setpoints.get(name, ""),
            )
        )
    ours, oracle = results[1], results[2]
    share = ours.saving_pct / oracle.saving_pct if oracle.saving_pct > 0 else float("nan")
    targets = (
        Target(
            "cooling: ≥ 80 % of the oracle's saving",
            100.0 * share,
            80.0,
            share >= 0.8,
            f"wattwise {ours.saving_pct:.1f} % vs oracle {oracle.saving_pct:.1f} %",
        ),
        Target(
            "cooling: ≥ 99.9 % of inlet samples ≤ 27 °C",
            ours.inlet_within_pct,
            99.9,
            ours.inlet_within_pct >= 99.9,
            f"{ours.inlet_within_pct:.2f} % within; hottest {ours.max_inlet_c:.1f} °C",
        ),
    )
    return ExperimentResult("cooling", "fixed 18 °C", "cooling energy", tuple(results), targets)
