"""The priors' clock curves are what the real data they come from give, refitted here."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import H100_DATA, REPO
from wattwise.optimizer.models.curve_fit import Run, fit_same_work
from wattwise.optimizer.models.limit_response import ClockCurve
from wattwise.optimizer.models.priors import (
    A40_CURVE,
    A100_CAUTIOUS_CURVE,
    A100_CURVE,
    A100_STATIC_SHARE,
    H100,
    PRIORS,
    prior_for,
)
from wattwise.optimizer.models.sweep_fit import fit
from wattwise.optimizer.models.sweeps import load_sweeps

PERSEUS = REPO / "tests" / "data" / "public" / "perseus-sosp24"
SETTLE_ROWS = 15
"""The first 1.5 s of a phase still carry the one before (1 s averaged power)."""


def h100_matmul_runs(data_dir: Path) -> list[Run]:
    """The 8192² matmul at each duty cycle, as the optimizer's estimate reads a bucket:
    burst from the mean over the busy share, gap and memory power from the H100's prior."""
    with (data_dir / "h100_telemetry_10hz.csv").open() as f:
        rows = list(csv.DictReader(f))
    runs = []
    for phase, group in itertools.groupby(rows, key=lambda r: r["phase"]):
        kept = list(group)[SETTLE_ROWS:]
        if not phase.startswith("matmul:8192") or not kept:
            continue

        def mean(name: str, kept: list[dict[str, str]] = kept) -> float:
            return float(np.mean([float(r[name]) for r in kept]))

        busy = mean("util_gpu") / 100.0
        gap = H100.static_w + H100.leak_w_per_c * (mean("temp_c") - H100.leak_ref_temp_c)
        memory = H100.memory_w * mean("util_mem") / 100.0 / busy
        burst = gap + (mean("power_w") - gap) / busy
        runs.append(Run(burst, gap, memory, mean("sm_mhz") / H100.top_clock_mhz))
    return runs


def test_h100_curve_is_the_one_its_matmul_shows_at_five_clocks() -> None:
    runs = h100_matmul_runs(H100_DATA)
    assert len(runs) == 5
    got = fit_same_work(runs)
    assert got.spread < 0.03  # one demand, within 3 %, at clocks from 1360 to 1930 MHz
    assert (got.typical.knee_rel, got.typical.knee_voltage) == pytest.approx(
        (H100.knee_clock_rel, H100.knee_voltage), abs=0.005
    )
    assert (got.cautious.knee_rel, got.cautious.knee_voltage) == pytest.approx(
        (H100.cautious_knee_clock_rel, H100.cautious_knee_voltage), abs=0.005
    )


def test_the_h100_is_flatter_than_the_published_a100_and_the_cautious_curve_flatter_still() -> None:
    at = np.array(0.85)
    h100, cautious = H100.curve.phi(at), H100.cautious_curve.phi(at)
    assert cautious > h100 > ClockCurve(*A100_CURVE).phi(at)


def test_a100_curves_are_the_published_sweeps_fits() -> None:
    share = A100_STATIC_SHARE
    sxm = fit(
        load_sweeps(PERSEUS / "stage_profile_gpt3-175b_a100_sxm_bf16.csv"), static_share=share
    )
    pcie = fit(load_sweeps(PERSEUS / "A100_pcie_zeus_global.csv"), static_share=share)
    assert (sxm.curve.knee_rel, sxm.curve.knee_voltage) == pytest.approx(A100_CURVE, abs=0.01)
    assert (pcie.curve.knee_rel, pcie.curve.knee_voltage) == pytest.approx(
        A100_CAUTIOUS_CURVE, abs=0.01
    )
    a100 = prior_for("NVIDIA A100-SXM4-80GB")
    assert a100 is not None and (a100.knee_clock_rel, a100.knee_voltage) == A100_CURVE


def test_l40s_typical_curve_is_the_a40_sweeps_fit() -> None:
    a40 = fit(
        load_sweeps(PERSEUS / "stage_profile_gpt3-175b_a40_bf16.csv"),
        static_share=A100_STATIC_SHARE,
    )
    assert (a40.curve.knee_rel, a40.curve.knee_voltage) == pytest.approx(A40_CURVE, abs=0.01)
    l40s = prior_for("NVIDIA L40S")
    assert l40s is not None and (l40s.knee_clock_rel, l40s.knee_voltage) == A40_CURVE


def test_l40s_without_data_is_bounded_on_the_flattest_cautious_curve_measured() -> None:
    """Regression: the L40S borrowed the A100's cautious curve, steeper than the H100's, so
    caps on a flatter L40S slowed work 6.5 % where 5 % was promised."""
    l40s = prior_for("NVIDIA L40S")
    assert l40s is not None
    at = np.array(0.85)
    flattest = max(float(p.cautious_curve.phi(at)) for _, p in PRIORS)
    assert float(l40s.cautious_curve.phi(at)) == flattest
