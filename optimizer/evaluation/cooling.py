"""Cooling setpoints on the twin: a fixed 18 °C, wattwise, and the oracle, in steady state.

wattwise starts at the baseline and moves at most ``max_step_c`` per refresh, a
ramp an operator goes through once, when wattwise is deployed. The experiment
measures what it does afterwards: a first pass lets wattwise act until, at one
refresh, no zone needed a full step (at most :data:`MAX_RAMP_REFRESHES` refreshes);
every policy then runs on an identical replica from the end of warm-up, acting
from the first second, and is measured over the same window, which starts one
refresh after that point (or at the scenario's ``settle_s`` if that is later).

The oracle is the warmest constant setpoint per zone (0.5 °C grid in 18–27 °C)
whose realized run keeps 99.9 % of that zone's inlet samples at or below 27 °C,
found by bisection over full runs of the twin: cooling energy falls and inlet
temperatures rise monotonically with the setpoint, and zones do not share air,
so every bisection round runs each zone at its own candidate in one replica.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.evaluation.record import TelemetryRecorder
from wattwise.optimizer.evaluation.replica import (
    INLET_LIMIT_C,
    PolicyRun,
    Replica,
    run_for,
    run_policy,
)
from wattwise.optimizer.evaluation.results import ExperimentResult, Target, policy_result
from wattwise.optimizer.evaluation.scenario import Scenario
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.recommend.cooling import ThermalFits, recommend_cooling
from wattwise.optimizer.recommend.settings import CoolingSettings

GRID_C = 0.5
LOWEST_C, HIGHEST_C = 18.0, 27.0
INLET_SHARE = 0.999
BASELINE_C = 18.0
MODEL_WINDOW_S = 86400.0
"""Telemetry the models learn from: the service's default refit window."""
MAX_RAMP_REFRESHES = 12
"""At 1 °C per refresh, 18 → 27 °C takes 9 refreshes: past 12 the ramp is reported unfinished."""


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
    """wattwise: models fitted on the replica's telemetry, the cooling recommendation from the
    latest states, applied each refresh as the service applies it; the evaluation refits at
    every refresh, where the service refits hourly."""

    settings: CoolingSettings = field(default_factory=CoolingSettings)
    name: str = "wattwise"
    setpoints_c: dict[str, float] = field(default_factory=dict)
    """The setpoint each zone was last given."""
    steps_c: dict[str, float] = field(default_factory=dict)
    """How far each zone moved at the last refresh."""

    def act(self, replica: Replica) -> None:
        t = replica.telemetry
        assert t is not None, "wattwise needs the replica's telemetry"
        fits = fitted_thermal(t, replica.clock.time_ns())
        for rec in recommend_cooling(
            t.latest_zones(), t.latest_hosts(), t.latest_gpus(), self.settings, fits
        ):
            replica.fleet.set_setpoint(rec.zone, rec.recommended_setpoint_c)
            self.setpoints_c[rec.zone] = rec.recommended_setpoint_c
            self.steps_c[rec.zone] = abs(rec.recommended_setpoint_c - rec.current_setpoint_c)

    def tick(self, replica: Replica) -> None:
        """Setpoints change only at refreshes."""

    @property
    def ramping(self) -> bool:
        """Whether some zone took a full step at the last refresh (held back by the step)."""
        full = self.settings.max_step_c - 1e-9
        return not self.steps_c or any(step >= full for step in self.steps_c.values())


def fitted_thermal(telemetry: TelemetryRecorder, now_ns: int) -> ThermalFits:
    start = now_ns - int(MODEL_WINDOW_S * 1e9)
    gpus = telemetry.series("gpu", start, now_ns + 1)
    hosts = telemetry.series("host", start, now_ns + 1)
    zones = telemetry.series("cooling", start, now_ns + 1)
    return ThermalFits(
        inlets=fit_inlet_models(hosts, zones),
        cooling=fit_cooling_models(zones),
        gpus=fit_gpu_thermal(gpus, hosts),
    )


def ramp_s(base: Replica, scenario: Scenario) -> float | None:
    """Seconds from wattwise's first refresh to the first at which no zone took a full step;
    None when it still did after :data:`MAX_RAMP_REFRESHES`."""
    replica = base.clone()
    policy = WattwiseCooling()
    for refresh in range(MAX_RAMP_REFRESHES + 1):
        policy.act(replica)
        if not policy.ramping:
            return refresh * scenario.refresh_s
        run_for(replica, scenario.refresh_s, scenario.read_every_s)
    return None


def steady_settle_s(ramp: float | None, scenario: Scenario) -> float:
    """When measurement starts: one refresh after the ramp ended (the supply air has followed
    by then), never before the scenario's own ``settle_s``."""
    ended = ramp if ramp is not None else MAX_RAMP_REFRESHES * scenario.refresh_s
    return max(scenario.settle_s, ended + scenario.refresh_s)


def run_cooling(base: Replica, scenario: Scenario, tell: Callable[[str], None]) -> ExperimentResult:
    """The whole cooling experiment on replicas of ``base`` (warmed up)."""
    ramp = ramp_s(base, scenario)
    tell("cooling: wattwise ramp")
    steady = scenario.model_copy(update={"settle_s": steady_settle_s(ramp, scenario)})
    baseline = FixedSetpoints(dict.fromkeys(scenario.zones, BASELINE_C))
    runs = {baseline.name: run_policy(base, baseline, steady)}
    tell("cooling: fixed 18 °C")
    ours = WattwiseCooling()
    runs["wattwise"] = run_policy(base, ours, steady, record=True)
    tell("cooling: wattwise")
    chosen, runs["oracle"] = oracle_setpoints(base, steady, lambda: tell("cooling: oracle"))
    tell("cooling: oracle")
    settings = {
        baseline.name: "18.0 °C everywhere",
        ours.name: _setpoints_text(ours.setpoints_c),
        "oracle": _setpoints_text(chosen),
    }
    return judge_cooling(runs, settings, Window(ramp, steady.settle_s, steady.duration_s))


def _setpoints_text(setpoints: dict[str, float]) -> str:
    return ", ".join(f"{z} {c:.1f} °C" for z, c in setpoints.items())


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


@dataclass(frozen=True)
class Window:
    """Where the measured horizon lies: after wattwise's ramp (None: unfinished)."""

    ramp_s: float | None
    settle_s: float
    duration_s: float

    def text(self) -> str:
        ramp = "did not finish" if self.ramp_s is None else f"took {self.ramp_s:.0f} s"
        return (
            f"measured {self.settle_s:.0f}–{self.settle_s + self.duration_s:.0f} s after the "
            f"policies first acted; wattwise's ramp from 18 °C {ramp}"
        )


def judge_cooling(
    runs: dict[str, PolicyRun], setpoints: dict[str, str], window: Window
) -> ExperimentResult:
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
                    ),
                    "settle_s": window.settle_s,
                    "ramp_s": math.nan if window.ramp_s is None else window.ramp_s,
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
            f"wattwise {ours.saving_pct:.1f} % vs oracle {oracle.saving_pct:.1f} % "
            f"({100.0 * share:.0f} %); {window.text()}",
        ),
        Target(
            "cooling: ≥ 99.9 % of inlet samples ≤ 27 °C",
            ours.inlet_within_pct,
            99.9,
            ours.inlet_within_pct >= 99.9,
            f"{ours.inlet_within_pct:.2f} % within; hottest {ours.max_inlet_c:.1f} °C",
        ),
    )
    notes = (window.text(),)
    return ExperimentResult(
        "cooling", "fixed 18 °C", "cooling energy", tuple(results), targets, notes
    )
