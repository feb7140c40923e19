"""Power caps on the twin: default limits, a static 80 % cap, wattwise, and the oracle.

Each policy decides every refresh period from what it can know then (wattwise:
the telemetry the store would hold; the oracle: the twin's exact response of
each GPU's current job to every candidate limit) and its replica runs on. Only
realized outcomes count: energy per unit of work done, the slowdown of each
GPU's work against the same GPU under default limits, period by period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.collector.sim.dvfs import Floats
from wattwise.optimizer.evaluation.replica import PolicyRun, Replica
from wattwise.optimizer.evaluation.results import ExperimentResult, Target, policy_result
from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models
from wattwise.optimizer.recommend.caps import other_power_per_gpu, recommend_caps
from wattwise.optimizer.recommend.gain import pick
from wattwise.optimizer.recommend.settings import CapSettings

STEP_W = 5.0
"""Candidate limits are searched on the same 5 W grid the recommender uses."""
TELEMETRY_WINDOW_S = 900.0


def _limits(replica: Replica) -> tuple[Floats, Floats, Floats]:
    models = replica.fleet.models
    return (
        np.array([m.min_limit_w for m in models]),
        np.array([m.max_limit_w for m in models]),
        np.array([m.default_limit_w for m in models]),
    )


def _apply(replica: Replica, limits_w: Floats) -> None:
    fleet = replica.fleet
    for (host, gpu), index in fleet.layout.gpu_index.items():
        if fleet.limit_w[index] != limits_w[index]:
            fleet.set_power_limit(host, gpu, float(limits_w[index]))


class JobScopedCaps:
    """A cap belongs to the job it was chosen for: when that job ends, the GPU returns to its
    default limit (what a scheduler's epilog does), so a new job never inherits a stranger's cap.

    A job is recognised by its duty, drawn afresh for every job the twin starts.
    """

    _job_duty: Floats | None = None

    def _remember_jobs(self, replica: Replica) -> None:
        self._job_duty = replica.fleet.jobs.duty.copy()

    def tick(self, replica: Replica) -> None:
        if self._job_duty is None:
            return
        fleet = replica.fleet
        ended = (fleet.jobs.duty != self._job_duty) & (fleet.limit_w != _limits(replica)[2])
        if ended.any():
            _apply(replica, np.where(ended, _limits(replica)[2], fleet.limit_w))


@dataclass
class DefaultCaps:
    """Baseline: every GPU at its default power limit."""

    name: str = "default limits"

    def act(self, replica: Replica) -> None:
        _apply(replica, _limits(replica)[2])

    def tick(self, replica: Replica) -> None:
        """Nothing changes between refreshes."""


@dataclass
class StaticCap:
    """Baseline: every GPU capped at a fixed share of its maximum limit, whatever runs."""

    share: float = 0.8
    name: str = "static 80 % cap"

    def tick(self, replica: Replica) -> None:
        """The cap is static."""

    def act(self, replica: Replica) -> None:
        low, high, _ = _limits(replica)
        _apply(replica, np.clip(self.share * high, low, high))


@dataclass
class WattwiseCaps(JobScopedCaps):
    """wattwise: fit on the recorded telemetry, recommend, apply; no recommendation → default."""

    slowdown_bound: float
    name: str = "wattwise"

    def act(self, replica: Replica) -> None:
        telemetry = replica.telemetry
        assert telemetry is not None, "wattwise needs the replica's telemetry"
        end_ns = replica.clock.time_ns()
        start_ns = end_ns - int(TELEMETRY_WINDOW_S * 1e9)
        series = telemetry.series("gpu", start_ns, end_ns + 1)
        work = estimate_workloads(series, fit_cap_models(series))
        settings = CapSettings(slowdown_bound=self.slowdown_bound, step_w=STEP_W)
        limits = _limits(replica)[2].copy()
        index = replica.fleet.layout.gpu_index
        gpus = telemetry.latest_gpus()
        other = other_power_per_gpu(gpus, telemetry.latest_hosts())
        for rec in recommend_caps(gpus, work, settings, other_w=other):
            if rec.recommended_limit_w is not None:
                limits[index[(rec.host, rec.gpu)]] = rec.recommended_limit_w
        _apply(replica, limits)
        self._remember_jobs(replica)


@dataclass
class OracleCaps(JobScopedCaps):
    """Exhaustive search on the twin's truth, under wattwise's rule: per GPU, the limit on the
    5 W grid with the least true energy per unit of work (the node's other power counted)
    whose true slowdown of the current job is within the bound and paid for by its saving."""

    slowdown_bound: float
    gain_ratio: float = 1.0
    name: str = "oracle"

    def act(self, replica: Replica) -> None:
        low, high, default = _limits(replica)
        steps = int(np.ceil(np.max(high - low) / STEP_W)) + 1
        grid = np.minimum(low[:, None] + STEP_W * np.arange(steps)[None, :], high[:, None])
        fleet = replica.fleet
        truth = fleet.truth
        rate, power = truth.at_power_limits(grid)
        top_rate, top_power = truth.at_power_limits(high)
        other = _other_power_per_gpu(replica)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            energy = (power + other) / rate
            top_energy = (top_power[:, None] + other) / top_rate[:, None]
            slowdown = np.where(rate > 0, top_rate[:, None] / rate - 1.0, np.inf)
            saving = 1.0 - energy / top_energy
        # An idle GPU has no work to save energy on: nothing passes the rule there.
        saving = np.where(np.isfinite(saving), saving, -np.inf)
        best = pick(
            slowdown, saving, slowdown_bound=self.slowdown_bound, gain_ratio=self.gain_ratio
        )
        choice = np.where(best >= 0, grid[np.arange(len(grid)), np.maximum(best, 0)], high)
        _apply(replica, np.where(fleet.jobs.has_job, choice, default))
        self._remember_jobs(replica)


def _other_power_per_gpu(replica: Replica) -> Floats:
    """Each GPU's share of what its node draws besides its GPUs (true values)."""
    fleet = replica.fleet
    node = fleet.layout.node_of_gpu
    count = np.bincount(node, minlength=fleet.layout.node_count)
    gpu_w = np.bincount(node, weights=fleet.op.power_w, minlength=fleet.layout.node_count)
    other = np.maximum(fleet.nodes.node_power_w - gpu_w, 0.0) / np.maximum(count, 1)
    return np.asarray(other[node], dtype=np.float64)


MIN_PERIOD_WORK = 0.2
"""A GPU-period counts for the slowdown check when its default run worked ≥ 20 % of the time:
ratios of tiny amounts of work say nothing about a cap."""


def judge_caps(runs: dict[str, PolicyRun], bound: float) -> ExperimentResult:
    """Savings of busy GPUs' energy per unit of work against default limits; per-GPU checks."""
    ref = runs["default limits"]
    ref_epw = _busy_energy_per_work(ref)
    results = []
    for run in runs.values():
        epw = _busy_energy_per_work(run)
        worst, over, capped = _period_slowdowns(run, ref, bound)
        low, high = float(np.min(run.period_limits_w)), float(np.max(run.period_limits_w))
        results.append(
            policy_result(
                run,
                saving_pct=100.0 * (1.0 - epw / ref_epw),
                slowdown_pct=100.0 * (ref.meter.work_gpu_s / max(run.meter.work_gpu_s, 1e-9) - 1),
                detail={
                    "lowest_limit_w": low,
                    "highest_limit_w": high,
                    "fleet_gpu_energy_saving_pct": 100.0
                    * (1.0 - run.meter.gpu_energy_j / ref.meter.gpu_energy_j),
                    "worst_gpu_slowdown_pct": worst,
                    "capped_gpu_periods": capped,
                    "gpu_periods_over_bound": over,
                },
                setting=f"limits {low:.0f}–{high:.0f} W",
            )
        )
    by_name = {r.policy: r for r in results}
    ours, oracle = by_name["wattwise"], by_name["oracle"]
    gap = oracle.saving_pct - ours.saving_pct
    over = int(ours.detail["gpu_periods_over_bound"])
    targets = (
        Target(
            "caps: saving within 2 points of the oracle",
            gap,
            2.0,
            gap <= 2.0,
            f"wattwise {ours.saving_pct:.1f} % vs oracle {oracle.saving_pct:.1f} %",
        ),
        Target(
            "caps: no GPU slowed past the bound + 1 point",
            over,
            0.0,
            over == 0,
            f"{over} of {int(ours.detail['capped_gpu_periods'])} capped GPU-periods over "
            f"{100 * bound + 1:g} %; worst {ours.detail['worst_gpu_slowdown_pct']:.1f} %",
        ),
    )
    return ExperimentResult(
        "caps", ref.policy, "GPU energy per unit of work of busy GPUs", tuple(results), targets
    )


def _busy_energy_per_work(run: PolicyRun) -> float:
    return run.meter.busy_energy_j / max(run.meter.busy_work_gpu_s, 1e-9)


def _period_slowdowns(run: PolicyRun, ref: PolicyRun, bound: float) -> tuple[float, int, int]:
    """Worst realized slowdown (%) of any capped GPU-period, how many exceed bound + 1 point,
    and how many capped GPU-periods there were."""
    worst, over, capped = 0.0, 0, 0
    periods = zip(
        run.period_work,
        ref.period_work,
        run.period_limits_w,
        ref.period_limits_w,
        ref.period_s,
        strict=True,
    )
    for work, ref_work, limits, ref_limits, period_s in periods:
        mask = (limits < ref_limits) & (ref_work >= MIN_PERIOD_WORK * period_s)
        if not mask.any():
            continue
        slow = 100.0 * (ref_work[mask] / np.maximum(work[mask], 1e-9) - 1.0)
        worst = max(worst, float(np.max(slow)))
        over += int(np.sum(slow > 100.0 * bound + 1.0))
        capped += int(mask.sum())
    return worst, over, capped
