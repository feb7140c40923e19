"""Cooling setpoints: the twin's true inlets stay within the limit, and steps stay bounded."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.optimizer.twin import gpu_states, host_states, walked_setpoint, zone_states
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.recommend.cooling import ThermalFits, recommend_cooling
from wattwise.optimizer.recommend.settings import CoolingSettings


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
