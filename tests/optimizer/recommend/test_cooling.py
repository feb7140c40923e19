"""Cooling setpoints: the twin's true inlets stay within the limit, and steps stay bounded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.optimizer.twin import gpu_states, host_states, walked_setpoint, zone_states
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.models.thermal import (
    GpuThermalModel,
    InletModel,
    fit_cooling_models,
    fit_gpu_thermal,
    fit_inlet_models,
)
from wattwise.optimizer.recommend.cooling import ThermalFits, recommend_cooling
from wattwise.optimizer.recommend.settings import CoolingSettings
from wattwise.optimizer.recommend.types import CoolingRecommendation
from wattwise.optimizer.telemetry import HostState


@pytest.fixture(scope="module")
def fleet_readings() -> tuple[SimFleet, list[Reading]]:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(8, 4, racks=4, zones=2, seed=5, setpoint_c=18.0), clock)
    for _ in range(60):
        clock.advance(5.0)
        fleet.sync()
    return fleet, list(fleet.read())


def test_walking_the_setpoint_up_keeps_every_true_inlet_at_or_below_27c(
    fleet_readings: tuple[SimFleet, list[Reading]],
) -> None:
    fleet, readings = fleet_readings
    cool = CoolingSettings(max_step_c=20.0)
    recs = recommend_cooling(
        zone_states(readings), host_states(readings), gpu_states(readings), cool
    )
    assert {r.zone for r in recs} == {"z1", "z2"}
    for rec in recs:
        assert rec.recommended_setpoint_c > rec.current_setpoint_c
        true_inlets = fleet.truth.inlet_temps_at_setpoint(rec.zone, rec.recommended_setpoint_c)
        assert max(true_inlets.values()) <= 27.0
        assert abs(max(true_inlets.values()) - rec.predicted_max_inlet_c) <= 0.5
        assert rec.saving_w > 0 and 0 < rec.saving_pct < 50


def test_each_change_is_at_most_one_step(fleet_readings: tuple[SimFleet, list[Reading]]) -> None:
    _, readings = fleet_readings
    recs = recommend_cooling(
        zone_states(readings), host_states(readings), gpu_states(readings), CoolingSettings()
    )
    for rec in recs:
        assert abs(rec.recommended_setpoint_c - rec.current_setpoint_c) <= 1.0 + 1e-9


@pytest.mark.parametrize("max_step_c", [0.3, 0.7, 1.1, 2.9, 20.0])
def test_a_recommended_setpoint_is_written_without_float_noise(
    fleet_readings: tuple[SimFleet, list[Reading]], max_step_c: float
) -> None:
    # Regression: the JSON said "recommended_setpoint_c": 20.900000000000002.
    _, readings = fleet_readings
    recs = recommend_cooling(
        zone_states(readings),
        host_states(readings),
        gpu_states(readings),
        CoolingSettings(max_step_c=max_step_c),
    )
    for rec in recs:
        assert len(repr(rec.recommended_setpoint_c).partition(".")[2]) <= 9


@settings(max_examples=60, deadline=None)
@given(
    setpoint=st.floats(18, 27),
    rise=st.floats(0, 8),
    gpu_rise=st.floats(20, 70),
    step=st.floats(0.5, 5),
)
def test_recommended_setpoint_never_predicts_an_inlet_or_gpu_past_its_limit_when_one_step_suffices(
    fleet_readings: tuple[SimFleet, list[Reading]],
    setpoint: float,
    rise: float,
    gpu_rise: float,
    step: float,
) -> None:
    _, readings = fleet_readings
    zone = dataclasses.replace(
        zone_states(readings)[0], setpoint_c=setpoint, supply_temp_c=setpoint
    )
    hosts = [dataclasses.replace(h, inlet_temp_c=setpoint + rise) for h in host_states(readings)]
    gpus = [dataclasses.replace(g, temp_c=setpoint + gpu_rise) for g in gpu_states(readings)]
    cool = CoolingSettings(max_step_c=step)
    rec = recommend_cooling([zone], hosts, gpus, cool)[0]
    assert abs(rec.recommended_setpoint_c - setpoint) <= step + 1e-9
    assert cool.min_setpoint_c <= rec.recommended_setpoint_c <= cool.max_setpoint_c
    feasible = setpoint - step + max(rise, 0) <= 26.5 and setpoint - step + gpu_rise <= 82.0
    if feasible and setpoint - step >= cool.min_setpoint_c:
        assert rec.predicted_max_inlet_c <= cool.max_inlet_c - cool.inlet_margin_c + 1e-9
        assert rec.predicted_max_gpu_temp_c <= rec.gpu_temp_limit_c + 1e-9


def test_fitted_thermal_models_keep_true_inlets_within_the_limit_and_say_so() -> None:
    data = walked_setpoint()
    readings = list(data.readings)
    fits = ThermalFits(
        inlets=fit_inlet_models(data.hosts, data.zones),
        cooling=fit_cooling_models(data.zones),
        gpus=fit_gpu_thermal(data.gpus, data.hosts),
    )
    recs = recommend_cooling(
        zone_states(readings), host_states(readings), gpu_states(readings),
        CoolingSettings(max_step_c=20.0), fits,
    )  # fmt: skip
    by_zone = {r.zone: r for r in recs}
    for rec in recs:
        true_inlets = data.fleet.truth.inlet_temps_at_setpoint(rec.zone, rec.recommended_setpoint_c)
        assert max(true_inlets.values()) <= 27.0
        assert abs(max(true_inlets.values()) - rec.predicted_max_inlet_c) <= 0.5
        assert "fitted inlets" in rec.reason and "fitted GPU R_th" in rec.reason
    assert "COP gain 3.5 %/°C (fitted)" in by_zone["z1"].reason
    assert "(prior)" in by_zone["z2"].reason


def test_without_fits_the_reason_names_the_priors() -> None:
    readings = list(walked_setpoint().readings)
    recs = recommend_cooling(
        zone_states(readings), host_states(readings), gpu_states(readings), CoolingSettings()
    )
    assert all("prior: inlets follow supply 1:1" in r.reason for r in recs)
    assert all("prior COP gain" in r.reason for r in recs)


def _inlet_model(
    hosts: list[HostState], zone: str, slope: float, peak_w: float | None, p99_c: float = 0.05
) -> InletModel:
    mine = [h for h in hosts if h.zone == zone]
    info = ModelInfo("inlet", zone, 1, 0, 0, 100, {"p99_abs_c": p99_c})
    return InletModel(
        zone,
        tuple(h.host for h in mine),
        np.full(len(mine), 1.0),
        slope,
        info,
        rack_recirculation_c_per_kw=np.full(len(mine), slope),
        peak_rack_power_w=None if peak_w is None else np.full(len(mine), peak_w),
    )


def _rack_power_w(hosts: list[HostState], rack: str) -> float:
    return sum(h.node_power_w for h in hosts if h.rack == rack)


def test_a_rack_that_ran_hotter_in_the_window_holds_the_setpoint_down_while_idle_now(
    fleet_readings: tuple[SimFleet, list[Reading]],
) -> None:
    _, readings = fleet_readings
    zones, hosts, gpus = zone_states(readings), host_states(readings), gpu_states(readings)
    zone = zones[0].zone
    now_w = max(_rack_power_w(hosts, h.rack) for h in hosts if h.zone == zone)
    cool = CoolingSettings(max_step_c=20.0)

    def recommended(peak_w: float | None) -> CoolingRecommendation:
        fits = ThermalFits(inlets={zone: _inlet_model(hosts, zone, 0.3, peak_w)})
        return next(r for r in recommend_cooling(zones, hosts, gpus, cool, fits) if r.zone == zone)

    calm, after_peak = recommended(None), recommended(now_w + 10_000.0)
    # 10 kW more at 0.3 °C/kW: 3 °C warmer inlets, so a setpoint 3 °C cooler.
    assert after_peak.predicted_max_inlet_c == pytest.approx(calm.predicted_max_inlet_c, abs=0.1)
    assert calm.recommended_setpoint_c - after_peak.recommended_setpoint_c == pytest.approx(
        3.0, abs=0.11
    )
    assert "peak power" in after_peak.reason


def test_a_model_less_certain_than_the_margin_widens_it(
    fleet_readings: tuple[SimFleet, list[Reading]],
) -> None:
    _, readings = fleet_readings
    zones, hosts, gpus = zone_states(readings), host_states(readings), gpu_states(readings)
    zone = zones[0].zone
    cool = CoolingSettings(max_step_c=20.0, inlet_margin_c=0.5)
    for p99_c, limit in ((0.05, 26.5), (1.5, 25.5)):
        fits = ThermalFits(inlets={zone: _inlet_model(hosts, zone, 0.05, None, p99_c)})
        rec = next(r for r in recommend_cooling(zones, hosts, gpus, cool, fits) if r.zone == zone)
        assert rec.predicted_max_inlet_c <= limit + 1e-9
        assert rec.predicted_max_inlet_c > limit - 0.11


def test_an_idle_gpu_is_predicted_at_its_power_limit_not_at_its_idle_power(
    fleet_readings: tuple[SimFleet, list[Reading]],
) -> None:
    _, readings = fleet_readings
    zones, hosts = zone_states(readings), host_states(readings)
    gpus = [
        dataclasses.replace(g, power_w=80.0, enforced_limit_w=700.0) for g in gpu_states(readings)
    ]
    zone = zones[0].zone
    thermal = GpuThermalModel(gpus[0].model, 10.0, 0.055, ModelInfo("gpu_thermal", "", 1, 0, 0, 1))
    fits = ThermalFits(
        inlets={zone: _inlet_model(hosts, zone, 0.05, None)}, gpus={gpus[0].model: thermal}
    )
    # At 700 W the GPU runs 10 + 0.055·700 = 48.5 °C over its inlet: with its limit at 87 − 14
    # = 73 °C that binds 2 °C before the inlet's 26.5 °C; at its 80 W now it would not bind.
    cool = CoolingSettings(max_step_c=20.0, gpu_temp_margin_c=14.0)
    rec = next(r for r in recommend_cooling(zones, hosts, gpus, cool, fits) if r.zone == zone)
    assert rec.gpu_temp_limit_c == 73.0
    assert rec.predicted_max_gpu_temp_c == pytest.approx(73.0, abs=0.11)
    assert rec.predicted_max_inlet_c == pytest.approx(73.0 - 48.5, abs=0.11)


@settings(max_examples=60, deadline=None)
@given(
    setpoint=st.floats(18, 27),
    slope=st.floats(0, 0.4),
    extra_peak_w=st.floats(0, 30_000),
    p99_c=st.floats(0, 2),
    step=st.floats(0.5, 5),
)
def test_with_fitted_inlets_no_step_exceeds_the_limit_and_no_prediction_a_limit(
    fleet_readings: tuple[SimFleet, list[Reading]],
    setpoint: float,
    slope: float,
    extra_peak_w: float,
    p99_c: float,
    step: float,
) -> None:
    _, readings = fleet_readings
    zone = dataclasses.replace(
        zone_states(readings)[0], setpoint_c=setpoint, supply_temp_c=setpoint
    )
    hosts, gpus = host_states(readings), gpu_states(readings)
    peak_w = max(_rack_power_w(hosts, h.rack) for h in hosts) + extra_peak_w
    fits = ThermalFits(inlets={zone.zone: _inlet_model(hosts, zone.zone, slope, peak_w, p99_c)})
    cool = CoolingSettings(max_step_c=step)
    rec = recommend_cooling([zone], hosts, gpus, cool, fits)[0]
    assert abs(rec.recommended_setpoint_c - setpoint) <= step + 1e-9
    assert cool.min_setpoint_c <= rec.recommended_setpoint_c <= cool.max_setpoint_c
    if rec.recommended_setpoint_c > max(setpoint - step, cool.min_setpoint_c) + 1e-9:
        # Not pinned at the coolest it may go: then every prediction is within its limit.
        margin = max(cool.inlet_margin_c, p99_c)
        assert rec.predicted_max_inlet_c <= cool.max_inlet_c - margin + 1e-9
        assert rec.predicted_max_gpu_temp_c <= rec.gpu_temp_limit_c + 1e-9
