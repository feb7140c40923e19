"""The price-based solver against exhaustive search on small nested problems."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwise.optimizer.recommend.budget_solve import Problem, solve

GRID = np.array([200.0, 300.0, 400.0, 500.0, 600.0, 700.0])


def _problem(slopes: list[float], rack_room: float, site_room: float) -> Problem:
    """One GPU per unit; convex losses (each GPU loses ``slope·(700 − L)²``); units 0..n/2 in
    rack 0, the rest in rack 1; both racks in the site."""
    n = len(slopes)
    limits = np.tile(GRID, (n, 1))
    loss = np.array(slopes)[:, None] * (700.0 - limits) ** 2 / 1e4
    racks = np.array([0 if i < n // 2 else 1 for i in range(n)])
    return Problem(
        limits, np.arange(n), loss, (racks, np.zeros(n, dtype=np.int64)),
        (np.array([rack_room, np.inf]), np.array([site_room])),
    )  # fmt: skip


def _best_by_search(p: Problem) -> float:
    best = np.inf
    n = len(p.unit_of_gpu)
    for choice in itertools.product(range(len(GRID)), repeat=n):
        limits = GRID[list(choice)]
        racks = p.scope_of_gpu[0]
        fits = np.bincount(racks, weights=limits, minlength=2) <= p.room_w[0] + 1e-9
        if fits.all() and limits.sum() <= p.room_w[1][0] + 1e-9:
            best = min(best, float(p.loss[np.arange(n), list(choice)].sum()))
    return best


@settings(max_examples=300, deadline=None)
@given(
    slopes=st.lists(st.floats(0.1, 10.0), min_size=4, max_size=5),
    rack_room=st.floats(600.0, 2500.0),
    site_room=st.floats(1200.0, 3500.0),
)
def test_solution_fits_every_scope_and_is_as_good_as_exhaustive_search(
    slopes: list[float], rack_room: float, site_room: float
) -> None:
    p = _problem(slopes, rack_room, site_room)
    s = solve(p)
    if not (s.feasible[0].all() and s.feasible[1].all()):
        assert np.all(s.limit_w[~_fits_units(p, s)] == GRID[0])
        return
    racks = np.bincount(p.scope_of_gpu[0], weights=s.limit_w, minlength=2)
    assert np.all(racks <= p.room_w[0] + 1e-6) and s.limit_w.sum() <= site_room + 1e-6
    found = float(p.loss[np.arange(len(slopes)), s.choice].sum())
    # Prices, then filling and trading the room left: the exact optimum in every random
    # case tried (800, docs/models.md); a search may yet find a split it misses by a step.
    assert found <= 1.05 * _best_by_search(p) + 1e-9


def _fits_units(p: Problem, s: object) -> np.ndarray:
    rack_ok = s.feasible[0][p.scope_of_gpu[0]]  # type: ignore[attr-defined]
    return np.asarray(rack_ok & s.feasible[1][0], dtype=np.bool_)  # type: ignore[attr-defined]


def test_ties_keep_the_highest_limit_and_a_loose_scope_changes_nothing() -> None:
    p = _problem([1.0, 1.0, 1.0, 1.0], np.inf, np.inf)
    s = solve(p)
    assert np.all(s.limit_w == 700.0)
    free = Problem(p.limits_w, p.unit_of_gpu, np.zeros_like(p.loss), p.scope_of_gpu, p.room_w)
    assert np.all(solve(free).limit_w == 700.0)


def test_the_unit_that_loses_least_gives_first() -> None:
    p = _problem([10.0, 0.1, 10.0, 10.0], np.inf, 4 * 700.0 - 400.0)
    s = solve(p)
    assert s.limit_w[1] == 300.0 and np.all(s.limit_w[[0, 2, 3]] == 700.0)


def test_a_scope_whose_minimums_do_not_fit_is_reported_with_its_gpus_at_minimum() -> None:
    p = _problem([1.0, 1.0, 1.0, 1.0], 300.0, np.inf)
    s = solve(p)
    assert list(s.feasible[0]) == [False, True]
    assert list(s.limit_w) == [200.0, 200.0, 700.0, 700.0]
