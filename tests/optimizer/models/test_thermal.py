"""Thermal fits against the fleet twin's known physics: R_th 0.055 °C/W over inlet + 10 °C,
recirculation 0.04 °C per rack kW (doubled at row ends), COP +3.5 %/°C."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.optimizer.twin import record, walked_setpoint
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.thermal import (
    fit_cooling_models,
    fit_gpu_thermal,
    fit_inlet_models,
    rack_power_w,
)
from wattwise.optimizer.telemetry import Series


def test_gpu_thermal_resistance_and_offset_match_the_twin() -> None:
    data = walked_setpoint()
    (model,) = fit_gpu_thermal(data.gpus, data.hosts).values()
    assert abs(model.r_th_c_per_w - 0.055) <= 0.005
    assert abs(model.offset_c - 10.0) <= 1.0
    assert model.info.errors["mae_c"] < 1.0
    assert model.info.samples > 1000


def test_inlet_recirculation_and_node_offsets_match_the_twin() -> None:
    data = walked_setpoint()
    models = fit_inlet_models(data.hosts, data.zones)
    assert set(models) == {"z1", "z2"}
    for model in models.values():
        # 2 racks per zone, both at a row end: 2 × 0.04 °C per kW
        assert abs(model.recirculation_c_per_kw - 0.08) <= 0.015
        assert model.info.errors["mae_c"] < 0.3
        assert len(model.hosts) == 4
    truth = data.fleet.truth.inlet_temps()
    z2 = models["z2"]
    supply = float(data.fleet.supply_c[1])
    rack_w = data.fleet.rack_power_w()
    racks = [int(h.split("-")[1][1:]) - 1 for h in z2.hosts]
    predicted = z2.inlet_c(supply, rack_w[racks])
    assert np.max(np.abs(predicted - np.array([truth[h] for h in z2.hosts]))) <= 0.3


def test_cop_gain_is_fitted_where_the_setpoint_moved_and_prior_where_it_did_not() -> None:
    data = walked_setpoint()
    models = fit_cooling_models(data.zones)
    assert models["z1"].gain_source == "fitted"
    assert abs(models["z1"].cop_gain_per_c - 0.035) <= 0.005
    assert abs(models["z1"].cop_at_20c - 4.0) <= 0.2
    assert models["z2"].gain_source == "prior"
    assert "prior" in models["z2"].info.notes


def test_rack_power_sums_the_nodes_of_a_rack_in_each_bucket() -> None:
    data = walked_setpoint()
    summed = rack_power_w(data.hosts)
    rows = (data.hosts.tags["rack"] == "r01") & (data.hosts.time_ns == data.hosts.time_ns[5])
    expected = float(np.sum(data.hosts.values["node_power_w"][rows]))
    assert np.allclose(summed[rows], expected)


@pytest.fixture(scope="module")
def row_of_three_racks() -> tuple[SimFleet, Series, Series]:
    """One zone, 3 racks × 3 nodes × 4 H100, 40 minutes of job churn: the two racks at the
    row's ends recirculate 0.08 °C per kW, the middle one 0.04."""
    clock = ManualClock()
    spec = FleetSpec.uniform(9, 4, racks=3, zones=1, seed=7, setpoint_c=20.0)
    fleet = SimFleet(spec, clock)
    rec = record(fleet, clock, 2400.0, read_every_s=10.0)
    return (
        fleet,
        rec.series("host", 0, clock.time_ns() + 1),
        rec.series("cooling", 0, clock.time_ns() + 1),
    )


def test_row_end_racks_get_their_own_recirculation_not_the_zone_average(
    row_of_three_racks: tuple[SimFleet, Series, Series],
) -> None:
    fleet, hosts, zones = row_of_three_racks
    (model,) = fit_inlet_models(hosts, zones).values()
    slopes = dict(zip(model.hosts, model.slopes_c_per_kw(), strict=True))
    assert set(np.round(fleet.recirculation_c_per_kw, 3)) == {0.04, 0.08}
    for host, slope in slopes.items():
        rack = int(host.split("-")[1][1:]) - 1
        assert abs(slope - fleet.recirculation_c_per_kw[rack]) <= 0.012, host
    assert 0.04 < model.recirculation_c_per_kw < 0.08
    assert model.info.errors["p99_abs_c"] < 0.3


def test_peak_rack_power_is_the_highest_minute_each_rack_drew(
    row_of_three_racks: tuple[SimFleet, Series, Series],
) -> None:
    _, hosts, zones = row_of_three_racks
    (model,) = fit_inlet_models(hosts, zones).values()
    assert model.peak_rack_power_w is not None
    summed = rack_power_w(hosts)
    for host, peak in zip(model.hosts, model.peak_rack_power_w, strict=True):
        rack = host.split("-")[1]
        assert peak == pytest.approx(float(np.max(summed[hosts.tags["rack"] == rack])))


def test_inlet_model_stored_before_racks_had_slopes_falls_back_to_the_zone_slope() -> None:
    data = walked_setpoint()
    model = dataclasses.replace(
        fit_inlet_models(data.hosts, data.zones)["z1"],
        rack_recirculation_c_per_kw=None,
        peak_rack_power_w=None,
    )
    assert np.all(model.slopes_c_per_kw() == model.recirculation_c_per_kw)
    at_10kw = model.inlet_c(20.0, np.full(len(model.hosts), 10_000.0))
    assert np.allclose(at_10kw, 20.0 + model.offset_c + 10.0 * model.recirculation_c_per_kw)
