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
def test_predicted_slowdown_of_compute_bound_work_matches_the_twin(
    twin: Twin, limit_w: float
) -> None:
    fleet, _, work = twin

    pred = at_limits(work, np.full(len(work), limit_w))
    top = at_limits(work, np.full(len(work), 700.0))
    for k, gpu in enumerate(work.gpu):
        if KINDS[int(gpu)] != 0:
            continue
        predicted = 100.0 * (top.throughput[k] / pred.throughput[k] - 1.0)
        truth = _true_slowdown_pct(fleet, int(gpu), limit_w)
        # μ is estimated a little low for training (0.05 for 0.1): deep caps are predicted
        # slightly slower than they are, never faster.
        assert truth - 1.5 <= predicted <= truth + max(1.5, 0.1 * truth)


def test_recommended_caps_keep_true_slowdown_within_bound_plus_one_point(twin: Twin) -> None:
    fleet, states, work = twin
    for rec in recommend_caps(states, work, CapSettings()):
        assert rec.recommended_limit_w is not None
        truth = _true_slowdown_pct(fleet, rec.gpu, rec.recommended_limit_w)
        assert truth <= 5.0 + 1.0
        # The prediction never promises less slowdown than comes; μ estimated low (inference:
        # 0.35 for 0.5) only makes it promise more.
        assert rec.slowdown_pct >= truth - 1.0
        if KINDS[rec.gpu] == 0:
            assert abs(rec.slowdown_pct - truth) <= 1.0


def test_memory_bound_work_gets_a_lower_cap_than_compute_bound_work(twin: Twin) -> None:
    _, states, work = twin
    recs = {r.gpu: r for r in recommend_caps(states, work, CapSettings())}
    memory = [recs[g].recommended_limit_w for g, k in enumerate(KINDS) if k == 2]
    compute = [recs[g].recommended_limit_w for g, k in enumerate(KINDS) if k == 0]
    assert max(m for m in memory if m is not None) < min(c for c in compute if c is not None)
    assert all(recs[g].boundness is not None and recs[g].boundness > 0.5 for g in (5, 6, 7))  # type: ignore[operator]


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
    assert all("busy samples" in r.reason for r in recs)


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
