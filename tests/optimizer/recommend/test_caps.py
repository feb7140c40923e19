"""Power caps on the fleet twin: predictions against its hidden truth, and the invariants."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.optimizer.twin import gpu_states, record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS
from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads, estimate_workloads, fit_cap_models
from wattwise.optimizer.recommend.caps import recommend_caps
from wattwise.optimizer.recommend.settings import CapSettings
from wattwise.optimizer.recommend.types import changes_limit
from wattwise.optimizer.telemetry import GpuState

Twin = tuple[SimFleet, list[GpuState], GpuWorkloads]
HOST = "sim-r01-n01"
KINDS = (0, 0, 0, 1, 1, 2, 2, 2)
"""Training (compute-bound), inference (mixed), memory-bound on GPUs 0–7."""


@pytest.fixture(scope="module")
def twin() -> tuple[SimFleet, list[GpuState], GpuWorkloads]:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 8, seed=3, busy_share=0.0, workloads=()), clock)
    for gpu, kind in enumerate(KINDS):
        fleet.start_job(HOST, gpu, DEFAULT_WORKLOADS[kind])
    series = record(fleet, clock, 600).series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))
    return fleet, gpu_states(fleet.read()), work


def _true_slowdown_pct(fleet: SimFleet, gpu: int, limit_w: float) -> float:
    at_cap = fleet.truth.at_power_limit(HOST, gpu, limit_w)[0]
    at_max = fleet.truth.at_power_limit(HOST, gpu, 700.0)[0]
    return 100.0 * (at_max / at_cap - 1.0)


@pytest.mark.parametrize("limit_w", [650.0, 600.0, 550.0])
def test_cautious_slowdown_of_every_work_is_never_a_point_under_the_twin(
    twin: Twin, limit_w: float
) -> None:
    fleet, _, work = twin
    cautious = at_limits(work, np.full(len(work), limit_w), cautious=True)
    top = at_limits(work, np.full(len(work), 700.0), cautious=True)
    for k, gpu in enumerate(work.gpu):
        predicted = 100.0 * (top.throughput[k] / cautious.throughput[k] - 1.0)
        assert predicted >= _true_slowdown_pct(fleet, int(gpu), limit_w) - 1.0


def test_recommended_caps_keep_true_slowdown_within_bound_plus_one_point(twin: Twin) -> None:
    fleet, states, work = twin
    for rec in recommend_caps(states, work, CapSettings()):
        assert rec.recommended_limit_w is not None
        truth = _true_slowdown_pct(fleet, rec.gpu, rec.recommended_limit_w)
        assert truth <= 5.0 + 1.0
        # The prediction never promises less slowdown than comes.
        assert rec.slowdown_pct >= truth - 1.0


def test_a_cap_that_saves_less_than_it_slows_is_not_recommended(twin: Twin) -> None:
    """Regression: the tie rule took the lowest limit within 0.1 % of the least energy and
    recommended 700 → 515 W at 4.6 % slowdown for 0.09 % less energy."""
    _, states, work = twin
    for rec in recommend_caps(states, work, CapSettings()):
        assert rec.recommended_limit_w is not None
        if changes_limit(rec.current_limit_w, rec.recommended_limit_w):
            assert rec.saving_pct >= rec.slowdown_pct > 0.0 or rec.slowdown_pct == 0.0
        else:
            assert rec.reason.endswith("no lower limit saves more energy than it costs in time")


def test_the_nodes_other_power_running_longer_counts_against_a_cap(twin: Twin) -> None:
    _, states, work = twin
    alone = recommend_caps(states, work, CapSettings())
    with_node = recommend_caps(states, work, CapSettings(), other_w={HOST: 2000.0})
    for a, b in zip(alone, with_node, strict=True):
        assert a.recommended_limit_w is not None and b.recommended_limit_w is not None
        assert b.recommended_limit_w >= a.recommended_limit_w
        assert b.saving_pct <= a.saving_pct + 1e-9


def _synthetic(bursts_w: list[float], mus: list[float]) -> GpuWorkloads:
    """Steady work on GPUs 0, 1, … of HOST whose activities GPM measured (μ known to 0.1)."""
    n = len(bursts_w)

    def full(value: float) -> np.ndarray:
        return np.full(n, value)

    mu = np.array(mus)
    return GpuWorkloads(
        host=np.full(n, HOST, dtype=object),
        gpu=np.array([str(i) for i in range(n)], dtype=object),
        model=np.full(n, "NVIDIA H100 80GB HBM3", dtype=object),
        samples=full(10.0),
        window_start_ns=full(0).astype(np.int64),
        window_end_ns=full(600e9).astype(np.int64),
        power_w=np.array(bursts_w) * 0.95,
        util_gpu=full(0.95),
        clock_rel=full(1.0),
        capped_share=full(0.0),
        gap_w=full(140.0),
        burst_w=np.array(bursts_w),
        burst_cautious_w=np.array(bursts_w),
        memory_w=full(150.0),
        boundness=mu,
        boundness_low=mu - 0.1,
        measured_activity=np.ones(n, dtype=np.bool_),
        variation=full(0.01),
        power_spread=full(0.01),
        knee_clock_rel=full(0.49),
        knee_voltage=full(0.92),
        cautious_knee_clock_rel=full(0.51),
        cautious_knee_voltage=full(0.98),
        min_clock_rel=full(345 / 1980),
        top_clock_mhz=full(1980.0),
    )


def test_the_gpus_of_one_job_get_one_limit_at_the_pace_of_the_slowest(twin: Twin) -> None:
    """A synchronous job runs at its slowest GPU's pace: one limit for all its GPUs, and
    the job's slowdown is the slowest GPU's (A100_pcie_zeus_local.csv shows it)."""
    _, states, _ = twin
    work = _synthetic([520.0, 560.0], [0.9, 0.6])
    two = states[:2]
    apart = recommend_caps(two, work, CapSettings())
    assert apart[0].recommended_limit_w != apart[1].recommended_limit_w  # alone, they differ
    jobs = {(HOST, 0): "train-1", (HOST, 1): "train-1"}
    together = recommend_caps(two, work, CapSettings(), jobs=jobs)
    limit = together[0].recommended_limit_w
    assert limit is not None and together[1].recommended_limit_w == limit
    assert together[0].slowdown_pct == together[1].slowdown_pct <= 5.0
    cautious = at_limits(work, np.full(2, limit), cautious=True)
    top = at_limits(work, np.full(2, 700.0), cautious=True)
    slowest = float(np.max(top.throughput / cautious.throughput)) - 1.0
    assert together[0].slowdown_pct == pytest.approx(100.0 * slowest)
    assert all("job train-1" in r.reason for r in together if limit < 700.0)


def test_recommendation_serialises_to_json_with_evidence(twin: Twin) -> None:
    _, states, work = twin
    rec = recommend_caps(states, work, CapSettings())[0]
    doc = json.loads(json.dumps(rec.as_dict(), allow_nan=False))
    assert doc["evidence"]["samples"] >= 5
    assert doc["objective"].startswith("least energy")


def test_idle_and_failed_gpus_get_no_recommendation_with_a_reason(twin: Twin) -> None:
    _, states, work = twin
    idle = dataclasses.replace(states[0], host="other-node")
    failed = dataclasses.replace(states[1], failed=True)
    recs = recommend_caps([idle, failed], work, CapSettings())
    assert [r.recommended_limit_w for r in recs] == [None, None]
    assert "no busy telemetry" in recs[0].reason
    assert "failed" in recs[1].reason


def test_gpu_idle_now_gets_no_cap_from_the_job_it_ran_before(twin: Twin) -> None:
    """The window still holds the ended job's buckets; its cap landed on the next job for up
    to a read interval and slowed that GPU-period 9.4 % (seed 25 of the mixed scenario)."""
    _, states, work = twin
    idle = dataclasses.replace(states[5], util_gpu_pct=0.0, mem_used_bytes=0.0)
    still_busy = dataclasses.replace(states[5], util_gpu_pct=0.0)

    recs = recommend_caps([idle, still_busy], work, CapSettings())

    assert recs[0].recommended_limit_w is None
    assert "idle now" in recs[0].reason
    assert recs[1].recommended_limit_w is not None


def test_low_confidence_is_refused_with_the_reason(twin: Twin) -> None:
    _, states, work = twin
    recs = recommend_caps(states, work, CapSettings(min_samples=1000))
    assert all(r.recommended_limit_w is None for r in recs)
    assert all("busy samples of the 1000 needed" in r.reason for r in recs)


@settings(max_examples=40, deadline=None)
@given(
    low=st.floats(50, 300),
    span=st.floats(0, 600),
    bound=st.floats(0, 0.5),
    eta=st.floats(0, 1),
    objective=st.sampled_from(["least_energy", "cost"]),
)
def test_recommended_limit_never_leaves_the_allowed_range(
    twin: Twin, low: float, span: float, bound: float, eta: float, objective: str
) -> None:
    _, states, work = twin
    ranged = [dataclasses.replace(s, min_limit_w=low, max_limit_w=low + span) for s in states]
    chosen = CapSettings.model_validate(
        {"slowdown_bound": bound, "eta": eta, "objective": objective}
    )
    recs = recommend_caps(ranged, work, chosen)
    for r in recs:
        assert r.recommended_limit_w is not None
        assert low <= r.recommended_limit_w <= low + span
