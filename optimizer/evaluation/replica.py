"""Replicas of the twin and the driver that runs one policy on one of them.

Every policy starts from a deep copy of the same warmed-up twin, so its jobs,
duty cycles and random draws are identical to every other policy's: the twin's
scheduler draws from its seeded generator by wall time, never by work done. The
driver advances all replicas in the same steps (whole multiples of the twin's
0.25 s sub-step), so the only difference between two runs is what the policy did.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from wattwise.clock import ManualClock
from wattwise.collector.sim import SimFleet
from wattwise.collector.sim.dvfs import Floats
from wattwise.optimizer.evaluation.record import TelemetryRecorder
from wattwise.optimizer.evaluation.scenario import Scenario

INLET_LIMIT_C = 27.0
"""ASHRAE's recommended upper inlet temperature; every experiment counts samples above it."""


@dataclass
class Replica:
    """One copy of the twin with its own clock (and the telemetry it has produced)."""

    fleet: SimFleet
    clock: ManualClock
    telemetry: TelemetryRecorder | None = None

    def clone(self) -> Replica:
        """An independent copy in the same state: same jobs, temperatures and random state."""
        return copy.deepcopy(self)

    def advance(self, seconds: float) -> None:
        """Move time on; read telemetry at the new instant if this replica records it."""
        self.clock.advance(seconds)
        if self.telemetry is None:
            self.fleet.sync()
        else:
            self.telemetry.add(self.fleet.read())


def warm_replica(scenario: Scenario, *, background: bool = True, record: bool = True) -> Replica:
    """A fresh twin of the scenario, run through its warm-up with telemetry recorded."""
    clock = ManualClock()
    fleet = SimFleet(scenario.fleet_spec(background=background), clock)
    replica = Replica(fleet, clock, TelemetryRecorder() if record else None)
    run_for(replica, scenario.warmup_s, scenario.read_every_s)
    return replica


def run_for(
    replica: Replica,
    seconds: float,
    step_s: float,
    meter: Meter | None = None,
    policy: Policy | None = None,
) -> None:
    """Advance ``seconds`` in steps of ``step_s`` (the last one shorter if need be)."""
    left = seconds
    while left > 1e-9:
        step = min(step_s, left)
        replica.advance(step)
        left -= step
        if meter is not None:
            meter.sample(replica.fleet, step)
        if policy is not None:
            policy.tick(replica)


class Policy(Protocol):
    """Decides and applies power limits, setpoints or placements on a replica."""

    name: str

    def act(self, replica: Replica) -> None:
        """Decide at a refresh (every ``refresh_s``) and apply the decision."""
        ...

    def tick(self, replica: Replica) -> None:
        """Called after every telemetry step between refreshes (react to jobs ending)."""
        ...


@dataclass
class Meter:
    """Ground-truth outcomes over the measured horizon of one replica."""

    budgets_w: Floats
    inlet_c: list[Floats] = field(default_factory=list)
    rack_samples: int = 0
    rack_over: int = 0
    worst_rack_share: float = 0.0
    throttled_gpu_s: float = 0.0
    start: Floats = field(default_factory=lambda: np.zeros(4))
    end: Floats = field(default_factory=lambda: np.zeros(4))
    busy_energy_j: float = 0.0
    """GPU energy drawn while the GPU ran a job (throughout a step), the part caps act on."""
    busy_work_gpu_s: float = 0.0
    _last: tuple[Floats, Floats, Floats] | None = None

    @classmethod
    def started(cls, fleet: SimFleet, budgets_w: dict[str, float]) -> Meter:
        budgets = np.array([budgets_w.get(r, np.inf) for r in fleet.layout.racks])
        meter = cls(budgets_w=budgets, start=_totals(fleet), end=_totals(fleet))
        meter._last = _per_gpu(fleet)
        return meter

    def sample(self, fleet: SimFleet, step_s: float) -> None:
        now = _per_gpu(fleet)
        if self._last is not None:
            busy = (now[2] > 0) & (self._last[2] > 0)
            self.busy_energy_j += float(np.sum((now[0] - self._last[0])[busy]))
            self.busy_work_gpu_s += float(np.sum((now[1] - self._last[1])[busy]))
        self._last = now
        self.inlet_c.append(fleet.nodes.inlet_c.copy())
        share = fleet.rack_power_w() / self.budgets_w
        self.rack_samples += len(share)
        self.rack_over += int(np.sum(share > 1.0))
        self.worst_rack_share = max(self.worst_rack_share, float(np.max(share)))
        self.throttled_gpu_s += step_s * float(np.sum(fleet.truth.thermally_throttled()))
        self.end = _totals(fleet)

    @property
    def gpu_energy_j(self) -> float:
        return float(self.end[0] - self.start[0])

    @property
    def it_energy_j(self) -> float:
        return float(self.end[1] - self.start[1])

    @property
    def cooling_energy_j(self) -> float:
        return float(self.end[2] - self.start[2])

    @property
    def work_gpu_s(self) -> float:
        return float(self.end[3] - self.start[3])

    def inlet_share_within(self, limit_c: float = INLET_LIMIT_C) -> float:
        samples = np.concatenate(self.inlet_c) if self.inlet_c else np.zeros(0)
        return float(np.mean(samples <= limit_c + 1e-9)) if samples.size else 1.0

    def max_inlet_c(self) -> float:
        return float(max((float(np.max(s)) for s in self.inlet_c), default=float("nan")))


def _per_gpu(fleet: SimFleet) -> tuple[Floats, Floats, Floats]:
    """Energy, work and whether a job runs, per GPU (copies)."""
    return fleet.energy_j.copy(), fleet.work.copy(), fleet.jobs.has_job.astype(np.float64)


def _totals(fleet: SimFleet) -> Floats:
    t = fleet.truth
    return np.array([t.energy_j(), t.it_energy_j(), t.cooling_energy_j(), t.total_work_done()])


@dataclass
class PolicyRun:
    """What one policy's replica did over the measured horizon."""

    policy: str
    meter: Meter
    period_work: list[Floats]
    """Work per GPU in each refresh period of the measured horizon."""
    period_limits_w: list[Floats]
    """Power limit of each GPU during that period."""
    period_s: list[float]


def run_policy(
    base: Replica,
    policy: Policy,
    scenario: Scenario,
    *,
    record: bool = False,
    on_step: Callable[[], None] | None = None,
    edges_s: Sequence[float] = (),
) -> PolicyRun:
    """Clone ``base``, let ``policy`` act every refresh, and measure the horizon after settling.

    ``edges_s`` are extra moments (seconds from the start) at which the policy acts as
    well, without moving the refresh schedule: the service's one-off refreshes at the
    edges of timed events.
    """
    replica = base.clone()
    if not record:
        replica.telemetry = None
    fleet = replica.fleet
    meter: Meter | None = None
    marks: list[Floats] = []
    times: list[float] = []
    limits: list[Floats] = []
    elapsed = 0.0
    next_refresh = 0.0
    edges = sorted(e for e in edges_s if e > 1e-9)
    total = scenario.settle_s + scenario.duration_s
    while elapsed < total - 1e-9:
        policy.act(replica)
        if elapsed >= next_refresh - 1e-9 or abs(elapsed - scenario.settle_s) < 1e-9:
            next_refresh = elapsed + scenario.refresh_s
        if meter is None and elapsed >= scenario.settle_s - 1e-9:
            meter = Meter.started(fleet, scenario.rack_budgets_w)
        if meter is not None:
            marks.append(fleet.work.copy())
            limits.append(fleet.limit_w.copy())
            times.append(elapsed)
        edge = next((e - elapsed for e in edges if e > elapsed + 1e-9), np.inf)
        step = min(next_refresh - elapsed, total - elapsed, _until_settled(scenario, elapsed), edge)
        run_for(replica, step, scenario.read_every_s, meter, policy)
        elapsed += step
        if on_step is not None:
            on_step()
    assert meter is not None
    marks.append(fleet.work.copy())
    times.append(elapsed)
    work = [b - a for a, b in itertools.pairwise(marks)]
    return PolicyRun(
        policy.name, meter, work, limits, [b - a for a, b in itertools.pairwise(times)]
    )


def _until_settled(scenario: Scenario, elapsed: float) -> float:
    """Steps stop at the end of the settle time so the measured horizon starts exactly there."""
    left = scenario.settle_s - elapsed
    return left if left > 1e-9 else np.inf
