"""Each GPU's work as estimate_workloads gives it (memory-boundness, window, load) and the
voltage floor fit_cap_models takes, against the fleet twin's hidden truth."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optimizer.twin import gpu_states, record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS, WorkloadSpec
from wattwise.optimizer.models.cap_power import phi
from wattwise.optimizer.models.cap_response import GpuWorkloads, estimate_workloads, fit_cap_models
from wattwise.optimizer.models.priors import prior_for
from wattwise.optimizer.recommend.caps import recommend_caps
from wattwise.optimizer.recommend.settings import CapSettings
from wattwise.optimizer.telemetry import Series

HOST = "sim-r01-n01"
H100 = "NVIDIA H100 80GB HBM3"
LLM_DECODE = WorkloadSpec(
    name="llm_decode",
    compute=0.6,
    memory=1.0,
    memory_bound=0.85,
    duty_min=0.7,
    duty_max=1.0,
    mean_length_s=1800,
    mem_fraction=0.9,
)
"""The memory-bound-heavy scenario's decode work: busy SMs, bound by HBM bandwidth."""
WORKLOADS = (*DEFAULT_WORKLOADS, LLM_DECODE)
KINDS = (0, 0, 1, 1, 2, 2, 3, 3)


def _gpu_of(work: GpuWorkloads, gpu: int) -> int:
    return int(np.flatnonzero(work.gpu.astype(str) == str(gpu))[0])


@pytest.fixture(scope="module")
def twin() -> tuple[SimFleet, GpuWorkloads, CapSettings]:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 8, seed=5, busy_share=0.0, workloads=()), clock)
    for gpu, kind in enumerate(KINDS):
        fleet.start_job(HOST, gpu, WORKLOADS[kind])
    series = record(fleet, clock, 600).series("gpu")
    return fleet, estimate_workloads(series, fit_cap_models(series)), CapSettings()


BOUNDNESS_SHORTFALL = {
    "training": 0.06,
    "inference": 0.17,
    "memory_bound": 0.06,
    "llm_decode": 0.05,
}
"""How far below the truth each workload's μ may be (docs/models.md gives the figures)."""


def test_boundness_is_never_above_the_truth_and_close_below_it_for_memory_bound_work(
    twin: tuple[SimFleet, GpuWorkloads, CapSettings],
) -> None:
    _, work, _ = twin
    for gpu, kind in enumerate(KINDS):
        spec = WORKLOADS[kind]
        estimate = float(work.boundness[_gpu_of(work, gpu)])
        # Over-estimating μ under-predicts slowdown; under-estimating only saves less.
        assert spec.memory_bound - BOUNDNESS_SHORTFALL[spec.name] <= estimate
        assert estimate <= spec.memory_bound + 0.01


def test_llm_decode_boundness_is_within_five_hundredths_of_the_truth(
    twin: tuple[SimFleet, GpuWorkloads, CapSettings],
) -> None:
    """The Euclidean roofline (p = 2) put decode at 0.74 and left a third of its saving."""
    _, work, _ = twin
    for gpu in (6, 7):
        assert float(work.boundness[_gpu_of(work, gpu)]) >= LLM_DECODE.memory_bound - 0.05


def test_llm_decode_gets_a_cap_that_saves_energy_within_the_slowdown_bound(
    twin: tuple[SimFleet, GpuWorkloads, CapSettings],
) -> None:
    fleet, work, settings = twin
    states = gpu_states(fleet.read())
    for rec in recommend_caps(states, work, settings):
        assert rec.recommended_limit_w is not None
        rate, power = fleet.truth.at_power_limit(HOST, rec.gpu, rec.recommended_limit_w)
        rate_max, power_max = fleet.truth.at_power_limit(HOST, rec.gpu, 700.0)
        assert rate_max / rate - 1.0 <= settings.slowdown_bound + 0.01
        if KINDS[rec.gpu] == 3:
            # The estimate of 0.4 the memory share of power gave kept these at ~700 W.
            assert rec.recommended_limit_w <= 680.0
            assert 1.0 - (power / rate) / (power_max / rate_max) >= 0.02


def test_window_mixing_two_jobs_estimates_only_the_job_running_now() -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 2, seed=7, busy_share=0.0, workloads=()), clock)
    fleet.start_job(HOST, 0, DEFAULT_WORKLOADS[2])
    fleet.start_job(HOST, 1, LLM_DECODE)
    rec = record(fleet, clock, 480)
    switch_ns = clock.time_ns()
    fleet.stop_job(HOST, 0, idle_s=0.0)
    fleet.start_job(HOST, 0, LLM_DECODE)
    record(fleet, clock, 360, into=rec)
    series = rec.series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))
    switched, steady = _gpu_of(work, 0), _gpu_of(work, 1)

    assert int(work.window_start_ns[switched]) >= switch_ns
    assert abs(work.boundness[switched] - work.boundness[steady]) <= 0.03
    assert work.variation[switched] < 0.05


def _inference_at(duty: float) -> WorkloadSpec:
    return DEFAULT_WORKLOADS[1].model_copy(update={"duty_min": duty, "duty_max": duty})


def test_next_job_of_the_same_kind_at_a_higher_duty_is_estimated_at_its_own_load() -> None:
    """Same activities, so no change is seen; averaged over the window, 10 minutes at duty
    0.62 hid 3 at 0.68 and the cap chosen slowed the new job 6.8 % (seed 26 of the mixed
    scenario)."""
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 1, seed=7, busy_share=0.0, workloads=()), clock)
    fleet.start_job(HOST, 0, _inference_at(0.62))
    rec = record(fleet, clock, 600)
    fleet.stop_job(HOST, 0, idle_s=0.0)
    fleet.start_job(HOST, 0, _inference_at(0.68))
    record(fleet, clock, 180, into=rec)
    series = rec.series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))
    prior = prior_for(H100)
    assert prior is not None

    # The new job's clock-dependent power at the top clock: duty × SM activity × K_c.
    truth_w = 0.68 * DEFAULT_WORKLOADS[1].compute * prior.compute_w
    assert work.dynamic_w[0] == pytest.approx(truth_w, rel=0.02)
    assert work.util_gpu[0] == pytest.approx(0.68, abs=0.02)


def test_job_started_a_minute_after_another_ended_gets_no_cap_from_the_old_one() -> None:
    """Both jobs inside the same bucket: no idle bucket parts them and their activities match.
    The old estimate kept the first job's duty (0.3) and capped the new one (0.56) at 300 W,
    66 % slower (seed 25 of the mixed scenario)."""
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 1, seed=7, busy_share=0.0, workloads=()), clock)
    fleet.start_job(HOST, 0, _inference_at(0.3))
    rec = record(fleet, clock, 615)
    fleet.stop_job(HOST, 0, idle_s=0.0)
    record(fleet, clock, 20, into=rec)
    fleet.start_job(HOST, 0, _inference_at(0.56))
    record(fleet, clock, 40, into=rec)
    series = rec.series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))

    (cap,) = recommend_caps(gpu_states(fleet.read()), work, CapSettings())

    assert cap.recommended_limit_w is None
    assert "busy samples" in cap.reason


def _capped_history(limits_w: tuple[float, ...], voltage_floor: float) -> Series:
    """One H100 running the same work under each limit (40 minutes each), power from φ."""
    prior = prior_for(H100)
    assert prior is not None
    clocks = {700.0: 1.0, 500.0: 0.7, 400.0: 0.55}
    x = np.repeat([clocks[w] for w in limits_w], 40)
    rows = x.size
    power = prior.static_w + prior.memory_w * 0.3 + 400.0 * phi(x, np.full(rows, voltage_floor))
    return Series(
        np.arange(rows, dtype=np.int64) * 60 * 10**9,
        {k: np.full(rows, v, dtype=object) for k, v in (("host", "n1"), ("gpu", "0"))}
        | {"model": np.full(rows, H100, dtype=object)},
        {
            "power_w": power,
            "sm_clock_mhz": x * prior.top_clock_mhz,
            "util_gpu_pct": np.full(rows, 90.0),
            "util_mem_pct": np.full(rows, 30.0),
            "temp_c": np.full(rows, prior.leak_ref_temp_c),
            "enforced_limit_w": np.repeat(limits_w, 40),
        },
    )


def test_voltage_floor_is_fitted_from_the_same_work_under_two_limits() -> None:
    model = fit_cap_models(_capped_history((700.0, 500.0, 400.0), 0.5))[H100]
    assert model.voltage_floor_source == "fitted"
    assert model.prior.voltage_floor == pytest.approx(0.5)


def test_voltage_floor_stays_the_prior_when_the_limit_never_moved() -> None:
    model = fit_cap_models(_capped_history((500.0, 500.0), 0.5))[H100]
    prior = prior_for(H100)
    assert prior is not None
    assert model.voltage_floor_source == "prior"
    assert model.prior.voltage_floor == prior.voltage_floor
