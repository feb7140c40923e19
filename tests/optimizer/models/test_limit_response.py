import numpy as np

from wattwise.optimizer.models.limit_response import (
    ClockCurve,
    burst_quantiles,
    center_for_mean,
    respond,
    spread_quantiles,
)

CURVE = ClockCurve(knee_rel=0.75, knee_voltage=0.85)


def test_curve_is_linear_below_the_knee_and_steeper_above() -> None:
    x = np.array([0.3, 0.6, 0.75, 0.9, 1.0])
    phi = CURVE.phi(x)
    assert phi[-1] == 1.0
    assert np.allclose(phi[:3] / x[:3], 0.85**2)
    assert CURVE.exponent_at_top() > 1.8


def test_inverse_round_trips() -> None:
    x = np.linspace(0.05, 1.0, 40)
    assert np.allclose(CURVE.phi_inverse(CURVE.phi(x)), x, atol=1e-6)


def test_demand_under_the_limit_runs_at_the_top_clock() -> None:
    r = respond(
        np.full((1, 8), 300.0),
        static_w=80.0,
        boundness=0.2,
        curve=CURVE,
        min_clock_rel=0.2,
        limit_w=400.0,
    )
    assert r.time_per_work[0] == 1.0
    assert r.power_w[0] == 300.0


def test_bursts_above_the_limit_slow_work_whose_mean_is_far_below_it() -> None:
    # 20 % busy at 690 W, 130 W between kernels: a 272 W mean under a 300 W limit.
    demand = burst_quantiles(np.array(130.0), np.array(690.0), np.array(0.2), 20)
    assert demand.mean() == 690.0 * 0.2 + 130.0 * 0.8
    common = {"static_w": 120.0, "boundness": 0.2, "curve": CURVE, "min_clock_rel": 0.2}
    free = respond(demand, limit_w=700.0, **common)  # type: ignore[arg-type]
    capped = respond(demand, limit_w=300.0, **common)  # type: ignore[arg-type]
    assert capped.time_per_work > 1.2 * free.time_per_work
    assert capped.power_w < 300.0


def test_stalls_below_the_lowest_clock_hold_the_limit() -> None:
    r = respond(
        np.full((1, 4), 700.0),
        static_w=100.0,
        boundness=0.0,
        curve=CURVE,
        min_clock_rel=0.5,
        limit_w=200.0,
    )
    assert abs(r.power_w[0] - 200.0) < 1e-9
    assert r.time_per_work[0] > 2.0


def test_center_for_mean_recovers_a_demand_held_at_its_limit() -> None:
    center = center_for_mean(np.array(290.0), 0.5, 300.0, 16)
    drawn = np.minimum(spread_quantiles(center, 0.5, 16), 300.0).mean()
    assert abs(drawn - 290.0) < 0.01
    assert center > 290.0
