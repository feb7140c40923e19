from __future__ import annotations

import numpy as np

from wattwise.collector.sim import H100_SXM
from wattwise.collector.sim.dvfs import GpuParams
from wattwise.collector.sim.thermal import (
    CoolingParams,
    GpuTemps,
    coefficient_of_performance,
    fan_power_w,
    relax,
)

ONE_H100 = GpuParams.of([H100_SXM])
AIR_C = np.array([35.0])


def test_relax_is_stable_and_exact_for_steps_much_longer_than_tau() -> None:
    out = relax(np.array([80.0]), np.array([40.0]), dt_s=1000.0, tau_s=0.5)
    assert out[0] == 40.0
    half = relax(np.array([80.0]), np.array([40.0]), dt_s=np.log(2.0), tau_s=1.0)
    np.testing.assert_allclose(half, [60.0])


def test_settled_temperature_rises_about_0_055_c_per_w() -> None:
    idle = GpuTemps.settled(ONE_H100, AIR_C, np.array([77.0]))
    full = GpuTemps.settled(ONE_H100, AIR_C, np.array([700.0]))
    assert 37.0 <= idle.die_c[0] <= 41.0
    assert 70.0 <= full.die_c[0] <= 76.0


def test_die_cools_fast_then_slowly_after_load_stops() -> None:
    temps = GpuTemps.settled(ONE_H100, AIR_C, np.array([700.0]))
    start = temps.die_c[0]
    low = np.array([135.0])
    temps_at = []
    for _ in range(180):  # 18 s in 0.1 s steps
        temps.step(ONE_H100, AIR_C, low, np.zeros(1), 0.1)
        temps_at.append(temps.die_c[0])
    after_2s, after_18s = temps_at[19], temps_at[-1]
    settled = GpuTemps.settled(ONE_H100, AIR_C, low).die_c[0]
    fast_drop, slow_drop = start - after_2s, after_2s - after_18s
    # Fast constant: most of the die-to-sink difference is gone within 2 s.
    assert fast_drop >= 12.0
    # Slow constant: the heatsink keeps cooling for tens of seconds, not yet settled.
    assert slow_drop >= 4.0
    assert after_18s > settled + 1.0


def test_cop_improves_2_to_5_percent_per_degree_of_supply() -> None:
    params = CoolingParams()
    cop = coefficient_of_performance(params, np.array([20.0, 21.0]))
    gain = cop[1] / cop[0] - 1.0
    assert 0.02 <= gain <= 0.05


def test_fan_power_follows_the_cube_of_inlet_until_full_speed_then_stays_bounded() -> None:
    params = CoolingParams()
    at_25, at_35, at_40, at_60, at_1000 = fan_power_w(
        params, np.array([25.0, 35.0, 40.0, 60.0, 1000.0])
    )
    assert at_25 == params.fan_w_at_25c
    np.testing.assert_allclose(at_35 / at_25, 2.0**3)
    # Past full speed hotter air cannot draw more: an unbounded cube diverged in dense racks.
    assert at_60 == at_40 == at_1000
    np.testing.assert_allclose(at_40, params.fan_w_at_25c * 2.5**3)
