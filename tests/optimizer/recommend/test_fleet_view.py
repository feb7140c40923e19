"""The fleet as placement sees it, built from states and fitted models."""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.optimizer.recommend.test_placement_basis import gpu
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.models.thermal import InletModel
from wattwise.optimizer.recommend.fleet_view import PRIOR_RECIRCULATION_C_PER_KW, FleetView


def test_placement_used_the_zone_slope_for_a_row_end_rack_that_recirculates_more() -> None:
    states = [
        dataclasses.replace(gpu(host, 0), rack=rack, zone=zone)
        for host, rack, zone in (("end", "r1", "z1"), ("mid", "r2", "z1"), ("other", "r3", "z2"))
    ]
    inlets = {
        "z1": InletModel(
            zone="z1",
            hosts=("end", "mid"),
            offset_c=np.zeros(2),
            recirculation_c_per_kw=0.05,
            info=ModelInfo("inlet", "z1", 1, 0, 0, 0),
            rack_recirculation_c_per_kw=np.array([0.08, 0.03]),
        )
    }
    view = FleetView.build(states, [], [], inlets=inlets)
    by_rack = dict(zip(view.rack_names, view.rack_recirculation_c_per_kw, strict=True))
    assert by_rack == {"r1": 0.08, "r2": 0.03, "r3": PRIOR_RECIRCULATION_C_PER_KW}
