from __future__ import annotations

import numpy as np
import pytest

from wattwise.collector.sim import H100_SXM
from wattwise.collector.sim.dvfs import (
    REASON_IDLE,
    REASON_SW_POWER_CAP,
    REASON_SW_THERMAL,
    GpuParams,
    phi,
    phi_inverse,
    solve,
)

ONE_H100 = GpuParams.of([H100_SXM])


def _solve(limit_w: float, temp_c: float = 60.0, compute: float = 1.0, busy: float = 1.0):  # type: ignore[no-untyped-def]
    return solve(
        ONE_H100,
        has_job=np.array([busy > 0]),
        busy=np.array([busy]),
        compute=np.array([compute]),
        memory=np.array([0.33]),
        burst_enforcement=np.array([0.5]),
        temp_c=np.array([temp_c]),
        limit_w=np.array([limit_w]),
    )


def test_phi_inverse_undoes_phi() -> None:
    x = np.linspace(0.05, 1.0, 50)
    np.testing.assert_allclose(phi_inverse(phi(x, ONE_H100), ONE_H100), x, atol=1e-6)


def test_power_is_proportional_to_the_clock_below_the_knee_and_steeper_above() -> None:
    knee = H100_SXM.knee_clock_rel
    below = np.array([0.3 * knee, 0.9 * knee])
    ratio = phi(below, ONE_H100) / below
    assert ratio[0] == pytest.approx(ratio[1])  # linear: the voltage is at its floor
    above = np.array([0.95, 1.0])
    slope_top = np.diff(np.log(phi(above, ONE_H100))) / np.diff(np.log(above))
    assert slope_top[0] > 1.2


def test_full_load_h100_is_held_at_its_700_w_limit_near_1365_mhz() -> None:
    op = _solve(700.0, temp_c=72.0)
    assert op.power_w[0] <= 700.0
    assert op.power_w[0] > 680.0
    assert abs(op.sm_clock_mhz[0] - 1365.0) <= 0.05 * 1365.0
    assert op.reasons[0] & REASON_SW_POWER_CAP


def test_lower_cap_lowers_clock_and_power() -> None:
    high, low = _solve(700.0), _solve(400.0)
    assert low.sm_clock_mhz[0] < high.sm_clock_mhz[0]
    assert low.power_w[0] <= 400.0 < high.power_w[0]


def test_clock_moves_in_15_mhz_steps() -> None:
    for limit in (250.0, 333.0, 517.0, 690.0):
        assert _solve(limit).sm_clock_mhz[0] % 15.0 == 0.0


def test_cap_below_what_the_lowest_clock_draws_stalls_instead_of_exceeding_it() -> None:
    op = _solve(200.0, temp_c=85.0)
    assert op.power_w[0] <= 200.0 + 1e-9
    assert op.busy[0] < 1.0
    assert op.reasons[0] & REASON_SW_POWER_CAP


def test_idle_gpu_drops_to_idle_clock_and_reports_idle_reason() -> None:
    op = _solve(700.0, temp_c=38.0, busy=0.0)
    assert op.sm_clock_mhz[0] == H100_SXM.idle_sm_clock_mhz
    assert op.reasons[0] == REASON_IDLE
    assert abs(op.power_w[0] - H100_SXM.idle_power_w) < 1.0


def test_light_load_runs_at_max_clock_without_reasons() -> None:
    op = _solve(700.0, compute=0.1, busy=0.5)
    assert op.sm_clock_mhz[0] == H100_SXM.max_sm_clock_mhz
    assert op.reasons[0] == 0


def test_near_slowdown_temperature_the_thermal_controller_caps_the_clock() -> None:
    cool = _solve(700.0, temp_c=70.0, compute=0.2, busy=0.5)
    hot = _solve(700.0, temp_c=H100_SXM.slowdown_temp_c + 3.0, compute=0.2, busy=0.5)
    assert hot.sm_clock_mhz[0] < cool.sm_clock_mhz[0]
    assert hot.reasons[0] & REASON_SW_THERMAL
    assert not cool.reasons[0] & REASON_SW_THERMAL
