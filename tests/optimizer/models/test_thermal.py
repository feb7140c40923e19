"""Thermal fits against the fleet twin's known physics: R_th 0.055 °C/W over inlet + 10 °C,
recirculation 0.04 °C per rack kW (doubled at row ends), COP +3.5 %/°C."""

from __future__ import annotations

import numpy as np

from tests.optimizer.twin import walked_setpoint
from wattwise.optimizer.models.thermal import (
    fit_cooling_models,
    fit_gpu_thermal,
    fit_inlet_models,
    rack_power_w,
)


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
