"""GPUs about to fail get no new work: placement leaves them out saying why, caps refuse them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.optimizer.twin import gpu_states, host_states, record, zone_states
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models
from wattwise.optimizer.recommend.caps import recommend_caps
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.health import HealthSettings, reason, unhealthy_gpus
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import CapSettings, PlacementSettings
from wattwise.optimizer.telemetry import GpuState, HostState, Series, ZoneState

NOW_NS = 1_700_003_600 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000


def _xids(*events: tuple[str, str, str, int]) -> Series:
    """A store's gpu_xid series from (host, GPU, XID code, minutes ago)."""
    return Series(
        time_ns=np.array([NOW_NS - m * MINUTE_NS for *_, m in events], dtype=np.int64),
        tags={
            "host": np.array([e[0] for e in events], dtype=object),
            "gpu": np.array([e[1] for e in events], dtype=object),
            "xid": np.array([e[2] for e in events], dtype=object),
        },
        values={"count": np.ones(len(events))},
    )


Twin = tuple[list[GpuState], list[HostState], list[ZoneState]]


@pytest.fixture(scope="module")
def twin() -> Twin:
    """Four idle nodes of four GPUs."""
    clock = ManualClock()
    spec = FleetSpec.uniform(4, 4, racks=2, zones=2, seed=3, busy_share=0.0, idle_gap_mean_s=1e6)
    fleet = SimFleet(spec, clock)
    clock.advance(60.0)
    readings = fleet.read()
    return gpu_states(readings), host_states(readings), zone_states(readings)


def test_pending_or_failed_remaps_and_recent_fatal_xids_make_a_gpu_unhealthy() -> None:
    base = dataclasses.replace(_state("n1", 0), remapped_rows_pending=0.0)
    gpus = [
        base,
        dataclasses.replace(base, gpu=1, remapped_rows_pending=1.0),
        dataclasses.replace(base, gpu=2, remapped_rows_failed=1.0),
        dataclasses.replace(base, gpu=3),
        dataclasses.replace(base, gpu=4),
        dataclasses.replace(base, gpu=5, remapped_rows_pending=math.nan),
    ]
    xids = _xids(("n1", "3", "79", 5), ("n1", "4", "13", 1), ("n1", "0", "48", 90))
    found = unhealthy_gpus(gpus, xids, NOW_NS, HealthSettings())
    assert set(found) == {("n1", 1), ("n1", 2), ("n1", 3)}
    assert "pending" in found[("n1", 1)] and "replace" in found[("n1", 2)]
    assert found[("n1", 3)] == "XID 79 (GPU has fallen off the bus) in the last 5 min"
    # XID 13 is the application's; XID 48 90 minutes ago is older than the hour
    wider = unhealthy_gpus(gpus, xids, NOW_NS, HealthSettings(xid_window_s=7200))
    assert "XID 48 (double-bit ECC error)" in wider[("n1", 0)]
    assert reason(found, "n1", 3) == f"GPU unhealthy: {found[('n1', 3)]}"
    assert reason(found, "n1", 0) is None


def test_placement_skips_unhealthy_gpus_and_says_why_in_rejected(twin: Twin) -> None:
    gpus, hosts, zones = twin
    settings = PlacementSettings()
    view = FleetView.build(gpus, hosts, zones)
    everyone = recommend_placement(PlacementRequest(gpus=4), view, settings)
    assert len(everyone.candidates) == 4  # every node is idle: four free GPUs each
    host = everyone.candidates[0].host
    unhealthy = {(host, 2): "XID 79 (GPU has fallen off the bus) in the last 3 min"}
    readings_view = FleetView.build(gpus, [], [], unhealthy=unhealthy, busy=())
    result = recommend_placement(PlacementRequest(gpus=4), readings_view, settings)
    assert host not in [c.host for c in result.candidates]
    assert result.rejected[host] == (
        "fewer than 4 free GPUs that fit the request "
        "(unhealthy GPU 2: XID 79 (GPU has fallen off the bus) in the last 3 min)"
    )
    one = recommend_placement(PlacementRequest(gpus=1), readings_view, settings)
    offered = {(c.host, g) for c in one.candidates for g in c.gpus}
    assert (host, 2) not in offered and any(h == host for h, _ in offered)


def test_caps_refuse_an_unhealthy_gpu_with_the_reason() -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(2, 2, seed=5, busy_share=1.0), clock)
    rec = record(fleet, clock, 1200, read_every_s=10)
    series = rec.series("gpu")
    work = estimate_workloads(series, fit_cap_models(series))
    gpus = gpu_states(fleet.read())
    sick = (gpus[0].host, gpus[0].gpu)
    caps = recommend_caps(
        gpus, work, CapSettings(), unhealthy={sick: "row remapping pending: reset"}
    )
    refused = next(c for c in caps if (c.host, c.gpu) == sick)
    assert refused.recommended_limit_w is None
    assert refused.reason == "no recommendation: GPU unhealthy: row remapping pending: reset"
    others = [c for c in caps if (c.host, c.gpu) != sick]
    assert any(c.recommended_limit_w is not None for c in others)
    plain = recommend_caps(gpus, work, CapSettings())
    assert [c for c in plain if (c.host, c.gpu) != sick] == others  # nothing else changed


def _state(host: str, gpu: int) -> GpuState:
    nan = math.nan
    return GpuState(
        host, gpu, "", "H100", "c", "z", "r", NOW_NS, 100.0, 40.0, 0.0, 0.0, 1980.0,
        700.0, 700.0, 200.0, 700.0, 700.0, 87.0, nan, nan, False,
    )  # fmt: skip
