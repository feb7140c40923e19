"""The voltage floor: found where the telemetry identifies it, the prior kept where it does not."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.optimizer.models.cap_power import fit_voltage_floor, phi, phi_inverse
from wattwise.optimizer.models.priors import CapPrior, prior_for
from wattwise.optimizer.telemetry import Series

H100 = "NVIDIA H100 80GB HBM3"
BUCKET_S = 60


def _prior() -> CapPrior:
    prior = prior_for(H100)
    assert prior is not None
    return prior


def _one_gpu(
    clock_rel: np.ndarray,
    limits_w: np.ndarray,
    per_busy_w: float,
    voltage_floor: float,
    *,
    busy: float = 0.9,
    noise_w: float = 0.0,
    seed: int = 1,
) -> dict[str, np.ndarray]:
    """Columns of one GPU's consecutive buckets running one piece of work."""
    prior = _prior()
    rows = clock_rel.size
    power = (
        prior.static_w
        + prior.memory_w * 0.3
        + busy * per_busy_w * phi(clock_rel, np.full(rows, voltage_floor))
        + np.random.default_rng(seed).normal(0.0, noise_w, rows)
    )
    return {
        "power_w": power,
        "sm_clock_mhz": clock_rel * prior.top_clock_mhz,
        "util_gpu_pct": np.full(rows, 100.0 * busy),
        "util_mem_pct": np.full(rows, 30.0),
        "temp_c": np.full(rows, prior.leak_ref_temp_c),
        "enforced_limit_w": limits_w.astype(np.float64),
    }


def _series(columns: dict[str, np.ndarray]) -> Series:
    rows = columns["power_w"].size
    tags = {"host": "n1", "gpu": "0", "model": H100}
    return Series(
        np.arange(rows, dtype=np.int64) * BUCKET_S * 10**9,
        {k: np.full(rows, v, dtype=object) for k, v in tags.items()},
        columns,
    )


def _all(series: Series) -> np.ndarray:
    return np.ones(len(series), dtype=np.bool_)


def test_floor_is_found_from_the_same_work_under_three_limits_despite_sensor_noise() -> None:
    x = np.repeat([1.0, 0.7, 0.55], 40)
    series = _series(_one_gpu(x, np.repeat([700, 500, 400], 40), 400.0, 0.5, noise_w=1.0))

    fit = fit_voltage_floor(series, _all(series), _prior())

    assert fit.source == "fitted"
    assert fit.voltage_floor == pytest.approx(0.5)
    assert fit.residual_w == pytest.approx(1.0, abs=0.3)


def test_floor_stays_the_prior_when_a_cap_barely_moves_the_clock_of_little_dynamic_power() -> None:
    """Memory-bound work capped a few watts below its draw: the old relative-spread criterion
    took whatever flat minimum 1 W of noise made, 0.45 to 1.0 over these ten draws (0.6 for
    the L40S on the twin, truth 0.9)."""
    x = np.repeat([1.0, 0.95, 0.97], 20)
    limits = np.repeat([350, 190, 185], 20)
    for seed in range(10):
        series = _series(_one_gpu(x, limits, 15.0, 0.9, noise_w=1.0, seed=seed))

        fit = fit_voltage_floor(series, _all(series), _prior())

        assert (fit.source, fit.voltage_floor) == ("prior", _prior().voltage_floor)


def test_a_bucket_where_a_job_started_does_not_move_the_floor() -> None:
    """A job's first bucket averages the idle clock into its clock while its power is mostly
    the job's; with the same utilization it joined the work's group and pulled the floor."""
    clean = _one_gpu(np.repeat([1.0, 0.7], 30), np.repeat([700, 500], 30), 400.0, 0.9)
    gap = {k: np.full(3, np.nan if k != "util_gpu_pct" else 0.0) for k in clean}
    started = _one_gpu(np.array([0.6]), np.array([700]), 400.0, 0.9)
    started["power_w"] = started["power_w"] + 60.0
    after = _one_gpu(np.ones(10), np.full(10, 700), 400.0, 0.9)
    columns = {k: np.concatenate([clean[k], gap[k], started[k], after[k]]) for k in clean}
    series = _series(columns)
    busy = columns["util_gpu_pct"] >= 5.0

    fit = fit_voltage_floor(series, busy, _prior())

    assert fit.voltage_floor == pytest.approx(0.9)


def test_no_limit_change_means_no_evidence() -> None:
    series = _series(_one_gpu(np.full(30, 0.8), np.full(30, 600), 400.0, 0.5))

    fit = fit_voltage_floor(series, _all(series), _prior())

    assert (fit.source, fit.voltage_floor) == ("prior", _prior().voltage_floor)
    assert np.isnan(fit.residual_w)


def test_phi_inverse_undoes_phi_across_floors() -> None:
    x = np.linspace(0.05, 1.0, 40)
    for v0 in (0.0, 0.5, 0.9, 1.0):
        floor = np.full_like(x, v0)
        assert phi_inverse(phi(x, floor), floor) == pytest.approx(x, abs=1e-9)
