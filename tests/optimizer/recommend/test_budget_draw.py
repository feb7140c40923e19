"""The budget planner's reserve against the real H100's second-to-second power."""

from __future__ import annotations

from pathlib import Path

from tests.optimizer.h100_spread import phase_spreads
from wattwise.optimizer.recommend.budget_draw import PEAK_SPREAD

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
