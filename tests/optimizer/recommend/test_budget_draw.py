"""The budget planner's reserve against the real H100's second-to-second power."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.optimizer.h100_spread import phase_spreads
from wattwise.optimizer.recommend.budget_draw import (
    PEAK_SPREAD,
    RESERVE_Z,
    job_spread,
    reserve_per_gpu,
)
from wattwise.optimizer.recommend.budget_fleet import Fleet

DATA = Path(__file__).resolve().parents[2] / "data/h100/h100_telemetry_10hz.csv"
LAUNCH_BOUND = "matmul:1024:duty=1.00"
"""Small kernels the CPU cannot launch fast enough (the README's launch-bound phase)."""


def test_the_assumed_spread_covers_every_steady_phase_of_the_real_h100() -> None:
    spreads = {s.phase: s for s in phase_spreads(DATA)}
    steady = [
        s for p, s in spreads.items() if p.startswith(("matmul", "copy")) and p != LAUNCH_BOUND
    ]
    assert len(steady) >= 10
    assert max(s.cv for s in steady) <= PEAK_SPREAD
    # Two standard deviations of the assumption cover each steady phase's 99th percentile.
    assert max(s.p99_excess for s in steady) <= 2 * PEAK_SPREAD


def test_launch_bound_work_moves_more_than_the_assumption() -> None:
    """The one phase it does not cover, kept in view: a launch-bound job's reserve is short."""
    launch = next(s for s in phase_spreads(DATA) if s.phase == LAUNCH_BOUND)
    assert launch.cv > PEAK_SPREAD


def _two_jobs(spreads: list[float]) -> Fleet:
    """Two one-GPU jobs drawing 317 W each on a 700 W H100, with these measured spreads."""
    n = len(spreads)
    full = np.full
    return Fleet(
        states=[],
        low_w=full(n, 200.0),
        default_w=full(n, 700.0),
        current_w=full(n, 700.0),
        util=full(n, 1.0),
        peak_w=full(n, 317.0),
        idle_w=full(n, 70.0),
        typical_w=full(n, 317.0),
        spread=np.array(spreads),
        unit=np.arange(n),
        unit_names=[f"job-{i}" for i in range(n)],
        weight=np.ones(n),
        priority=["normal"] * n,
    )


def test_a_job_measured_to_move_more_than_the_floor_is_reserved_at_its_own_spread() -> None:
    """The launch-bound matmul's measured spread sets its reserve; a steady job's smaller
    measured spread, or none, is counted at the floor."""
    spreads = {s.phase: s.cv for s in phase_spreads(DATA)}
    launch, steady = spreads[LAUNCH_BOUND], spreads["matmul:8192:duty=0.50"]
    assert steady < PEAK_SPREAD < launch
    fleet = _two_jobs([launch, steady, np.nan])
    assert job_spread(fleet).tolist() == pytest.approx([launch, PEAK_SPREAD, PEAK_SPREAD])
    one_rack = (np.zeros(3, dtype=np.int64),)
    share = reserve_per_gpu(fleet, np.zeros(3), one_rack)
    # Shares follow the variances: (spread × 317 W)² for each one-GPU job.
    assert share[0] / share[1] == pytest.approx((launch / PEAK_SPREAD) ** 2)
    assert share[1] == pytest.approx(share[2])
    total = RESERVE_Z * np.sqrt(((np.array([launch, PEAK_SPREAD, PEAK_SPREAD]) * 317.0) ** 2).sum())
    assert share.sum() == pytest.approx(total)


def test_a_restless_gpu_near_its_limit_does_not_take_the_racks_reserve() -> None:
    """A job moving by its whole mean at 650 W of 700 W cannot go 50 W higher; counted at
    its own spread it swelled the rack's pooled variance, its share was cut at the limit,
    and the rack kept less reserve than its three steady jobs alone would."""
    fleet = _two_jobs([1.0, np.nan, np.nan, np.nan])
    fleet.peak_w[0] = 650.0
    one_rack = (np.zeros(4, dtype=np.int64),)
    share = reserve_per_gpu(fleet, np.zeros(4), one_rack)
    headroom = fleet.default_w - fleet.peak_w
    assert np.all(share <= headroom + 1e-9)
    steady_alone = RESERVE_Z * np.sqrt(3 * (PEAK_SPREAD * 317.0) ** 2)
    counted = np.minimum(fleet.peak_w + share, fleet.default_w) - fleet.peak_w
    assert counted.sum() >= steady_alone
