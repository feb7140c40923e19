"""Job placement on the twin: spread, pack and random placement, wattwise, and the oracle.

The placement twin runs no random jobs: nodes carry seeded background work from the
start (whole nodes, or some GPUs of each), then the scenario's jobs arrive one a
minute and each policy picks a node and GPUs for each. Jobs then run for the whole
horizon, so every policy does the same work and the difference is where it ran:
nodes woken from the site's power saving (or left asleep), fans and leakage at
warmer inlets, recirculation, and the cooling of each zone.
"""

from __future__ import annotations

import numpy as np

from wattwise.clock import ManualClock
from wattwise.collector.sim import SimFleet, gpu_model
from wattwise.optimizer.evaluation.record import TelemetryRecorder
from wattwise.optimizer.evaluation.replica import Replica, run_for
from wattwise.optimizer.evaluation.scenario import PlacementJob, Scenario
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import PlacementSettings

ARRIVAL_S = 60.0
"""Jobs arrive a minute apart, so telemetry has seen the previous one before the next comes."""
ORACLE_SETTLE_S = 60.0
"""After a woken node has booted: GPU heatsinks (τ 15 s) and fans settle on the new load."""
ORACLE_RATE_S = 30.0
"""Then the fleet's IT + cooling power is measured over this window."""
TELEMETRY_WINDOW_S = 900.0

Choice = tuple[str, tuple[int, ...]] | None


def placement_replica(scenario: Scenario) -> Replica:
    """The placement twin after warm-up: background work started, telemetry recorded. Nodes
    without background work are powered down by then if the site saves power."""
    clock = ManualClock()
    fleet = SimFleet(scenario.fleet_spec(background=False), clock)
    _start_background(fleet, scenario, np.random.default_rng(scenario.seed))
    replica = Replica(fleet, clock, TelemetryRecorder())
    run_for(replica, scenario.warmup_s, scenario.read_every_s)
    return replica


def _start_background(fleet: SimFleet, scenario: Scenario, rng: np.random.Generator) -> None:
    """Whole nodes busy with ``background_busy_share`` each; or, GPU by GPU, nodes idle with
    ``background_idle_nodes`` each and the others given a binomial share of busy GPUs (at
    least one) so that ``background_busy_share`` of all GPUs are busy on average."""
    p = scenario.placement
    weights = np.array([w.weight for w in scenario.workloads])
    busy_of_rest = min(p.background_busy_share / max(1.0 - p.background_idle_nodes, 1e-9), 1.0)
    for node in fleet.spec.nodes:
        if p.background_whole_nodes:
            busy = node.gpus if rng.random() < p.background_busy_share else 0
        elif rng.random() < p.background_idle_nodes:
            busy = 0
        else:
            busy = max(int(rng.binomial(node.gpus, busy_of_rest)), 1)
        if busy == 0:
            continue
        work = scenario.workloads[rng.choice(len(weights), p=weights / weights.sum())]
        for gpu in range(busy):
            fleet.start_job(node.host, gpu, work)


def free_gpus(fleet: SimFleet) -> dict[str, list[int]]:
    free: dict[str, list[int]] = {}
    for (host, gpu), index in fleet.layout.gpu_index.items():
        if not fleet.jobs.has_job[index]:
            free.setdefault(host, []).append(gpu)
    return free


def _fitting(fleet: SimFleet, job: PlacementJob) -> list[tuple[str, tuple[int, ...]]]:
    """Nodes with enough free GPUs of the model the job needs, and the GPUs they would give."""
    wanted = job.gpu_model or ""
    product = {n.host: gpu_model(n.gpu_model).product_name for n in fleet.spec.nodes}
    return [
        (h, tuple(g[: job.gpus]))
        for h, g in free_gpus(fleet).items()
        if len(g) >= job.gpus and wanted in product[h]
    ]


def _rack_busy(fleet: SimFleet) -> dict[str, float]:
    lay = fleet.layout
    busy = np.bincount(lay.rack_of_node[lay.node_of_gpu], weights=fleet.jobs.has_job)
    return {r: float(busy[i]) for i, r in enumerate(lay.racks)}


def _node_busy(fleet: SimFleet) -> dict[str, float]:
    lay = fleet.layout
    busy = np.bincount(lay.node_of_gpu, weights=fleet.jobs.has_job, minlength=lay.node_count)
    return {t["host"]: float(busy[i]) for i, t in enumerate(lay.node_tags)}


class Spread:
    """The least-loaded rack, and in it the least-allocated node (then the lowest): load spread
    evenly, as Kubernetes' default LeastAllocated scoring spreads it over nodes."""

    name = "spread"

    def choose(self, replica: Replica, scenario: Scenario, job: PlacementJob) -> Choice:
        load = _rack_busy(replica.fleet)
        rack = {n.host: n.rack for n in replica.fleet.spec.nodes}
        busy = _node_busy(replica.fleet)
        options = _fitting(replica.fleet, job)
        return min(options, key=lambda o: (load[rack[o[0]]], busy[o[0]]), default=None)


class Pack:
    """The node in the most-loaded rack that still fits: racks filled one by one."""

    name = "pack"

    def choose(self, replica: Replica, scenario: Scenario, job: PlacementJob) -> Choice:
        load = _rack_busy(replica.fleet)
        rack = {n.host: n.rack for n in replica.fleet.spec.nodes}
        options = _fitting(replica.fleet, job)
        return max(options, key=lambda o: load[rack[o[0]]], default=None)


class RandomPlacement:
    """A node drawn at random (seeded) among those that fit."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def choose(self, replica: Replica, scenario: Scenario, job: PlacementJob) -> Choice:
        options = _fitting(replica.fleet, job)
        return options[int(self._rng.integers(len(options)))] if options else None


class WattwisePlacement:
    """wattwise: models fitted on the recorded telemetry, the top-ranked candidate."""

    name = "wattwise"

    def choose(self, replica: Replica, scenario: Scenario, job: PlacementJob) -> Choice:
        t = replica.telemetry
        assert t is not None, "wattwise needs the replica's telemetry"
        end = replica.clock.time_ns() + 1
        start = end - int(TELEMETRY_WINDOW_S * 1e9)
        per_gpu, hosts = t.series("gpu", start, end), t.series("host", start, end)
        zones = t.series("cooling", start, end)
        fleet = replica.fleet
        busy = [k for k, i in fleet.layout.gpu_index.items() if fleet.jobs.has_job[i]]
        view = FleetView.build(
            t.latest_gpus(),
            t.latest_hosts(),
            t.latest_zones(),
            curves=fit_node_power_curves(per_gpu, hosts),
            gpu_thermal=fit_gpu_thermal(per_gpu, hosts),
            inlets=fit_inlet_models(hosts, zones),
            cooling=fit_cooling_models(zones),
            busy=busy,
        )
        request = PlacementRequest(gpus=job.gpus, gpu_model=job.gpu_model)
        settings = PlacementSettings(rack_budgets_w=scenario.rack_budgets_w)
        result = recommend_placement(request, view, settings)
        if not result.candidates:
            return None
        best = result.candidates[0]
        return best.host, best.gpus


class OraclePlacement:
    """Exhaustive search on the twin: every node that fits, tried on a copy until any node it
    woke has booted and the heat has settled; the least fleet IT + cooling power after that
    among the options that keep every rack within budget and no GPU thermally throttled.

    Boots end long before the measured horizon starts, so the power once the job runs,
    times the horizon, is what each option adds to the horizon's energy: this is the
    oracle of that energy for each job in turn (greedy: it does not foresee later jobs).
    """

    name = "oracle"

    def choose(self, replica: Replica, scenario: Scenario, job: PlacementJob) -> Choice:
        best: tuple[float, Choice] = (np.inf, None)
        boot_s = scenario.power_saving.resume_s if scenario.power_saving is not None else 0.0
        for option in _fitting(replica.fleet, job):
            trial = replica.clone()
            trial.telemetry = None
            start_jobs(trial, scenario, option)
            run_for(trial, boot_s + ORACLE_SETTLE_S, scenario.read_every_s)
            before = _it_and_cooling_j(trial.fleet)
            run_for(trial, ORACLE_RATE_S, scenario.read_every_s)
            if not _within_limits(trial.fleet, scenario):
                continue
            used = _it_and_cooling_j(trial.fleet) - before
            if used < best[0]:
                best = (used, option)
        return best[1]


def _it_and_cooling_j(fleet: SimFleet) -> float:
    return fleet.truth.it_energy_j() + fleet.truth.cooling_energy_j()


def _within_limits(fleet: SimFleet, scenario: Scenario) -> bool:
    budgets = np.array([scenario.rack_budgets_w.get(r, np.inf) for r in fleet.layout.racks])
    return bool(np.all(fleet.rack_power_w() <= budgets)) and not bool(
        fleet.truth.thermally_throttled().any()
    )


def start_jobs(replica: Replica, scenario: Scenario, choice: Choice) -> None:
    if choice is None:
        return
    host, gpus = choice
    work = scenario.workload(scenario.placement.workload)
    for gpu in gpus:
        replica.fleet.start_job(host, gpu, work)
