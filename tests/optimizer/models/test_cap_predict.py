"""Predictions of work under power limits, worked in blocks of GPUs on large grids."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optimizer.twin import record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models import cap_predict
from wattwise.optimizer.models.cap_predict import BURST_QUANTILES, at_limits
from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models


def test_a_grid_worked_in_blocks_of_gpus_gives_what_one_pass_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(2, 8, seed=3, busy_share=0.9), clock)
    series = record(fleet, clock, 600).series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))
    assert len(work) >= 8
    limits = np.tile(np.linspace(200.0, 700.0, 26), (len(work), 1))
    whole = at_limits(work, limits)
    # three GPUs' cells per block: the grid goes in several blocks, the last one shorter
    monkeypatch.setattr(cap_predict, "BLOCK_CELLS", 3 * 26 * BURST_QUANTILES)
    blocks = at_limits(work, limits)
    for field in ("power_w", "clock_rel", "throughput"):
        assert getattr(blocks, field).shape == limits.shape
        assert np.array_equal(getattr(blocks, field), getattr(whole, field)), field
