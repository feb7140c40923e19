"""Impossible telemetry values become missing where they enter the optimizer, and are counted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from wattwise.collector.base import Reading
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.store import EmbeddedSqliteStore
from wattwise.optimizer.store.frames import GPU_STATE_FIELDS, HOST_STATE_FIELDS, ZONE_STATE_FIELDS
from wattwise.optimizer.store.sanity import FIELD_BOUNDS, SaneTelemetry
from wattwise.optimizer.telemetry import (
    GPU_SERIES_COLUMNS,
    HOST_SERIES_COLUMNS,
    JOB_SERIES_COLUMNS,
    ZONE_SERIES_COLUMNS,
    Scope,
)

T0 = 1_700_000_000 * 1_000_000_000
TAGS = {"host": "n1", "cluster": "c", "zone": "z", "rack": "r"}


def gpu(index: int, minute: int, util: float, temp: float = 60.0) -> Reading:
    fields = {"power_w": 300.0, "util_gpu_pct": util, "temp_c": temp, "enforced_limit_w": 700.0}
    return Reading("gpu", {**TAGS, "gpu": str(index)}, fields, T0 + minute * 60_000_000_000)


def test_impossible_values_are_dropped_per_sample_counted_and_the_rest_kept(
    tmp_path: Path,
) -> None:
    store = EmbeddedSqliteStore(tmp_path / "w.sqlite")
    readings = [gpu(g, m, 50.0 + g) for g in range(4) for m in range(5)]
    readings[7] = gpu(1, 2, 1e30)  # GPU 1, minute 2: one junk utilisation
    readings[15] = gpu(3, 0, 40.0, temp=-1e30)  # GPU 3, minute 0: a junk temperature
    host = Reading("host", TAGS, {"inlet_temp_c": 1e30, "node_power_w": 4000.0}, T0)
    store.write(encode_many([*readings, host]))
    sane = SaneTelemetry(store)
    series = sane.gpu_series(T0, T0 + 600_000_000_000, every_s=60, scope=Scope())
    util, temp = series.values["util_gpu_pct"], series.values["temp_c"]
    assert len(series) == 20 and int(np.isnan(util).sum()) == 1 and int(np.isnan(temp).sum()) == 1
    assert np.nanmax(util) == 53.0 and np.nanmin(temp) == 60.0
    assert series.values["power_w"].tolist() == [300.0] * 20  # the samples' other values stay
    (state,) = sane.latest_hosts(Scope())
    assert math.isnan(state.inlet_temp_c) and state.node_power_w == 4000.0
    assert sane.dropped() == {
        ("gpu", "util_gpu_pct"): 1,
        ("gpu", "temp_c"): 1,
        ("host", "inlet_temp_c"): 1,
    }
    store.close()


def test_every_numeric_column_the_optimizer_reads_has_physical_bounds() -> None:
    columns = {
        "gpu": GPU_SERIES_COLUMNS,
        "host": HOST_SERIES_COLUMNS,
        "cooling": ZONE_SERIES_COLUMNS,
        "gpu_job": JOB_SERIES_COLUMNS,
    }
    states = {
        "gpu": set(GPU_STATE_FIELDS) - {"failed"},
        "host": HOST_STATE_FIELDS,
        "cooling": ZONE_STATE_FIELDS,
    }
    for measurement, names in columns.items():
        assert set(names) <= set(FIELD_BOUNDS[measurement]), measurement
    for measurement, fields in states.items():
        assert set(fields) <= set(FIELD_BOUNDS[measurement]), measurement
