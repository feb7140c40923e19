from __future__ import annotations

import re

from wattwise.clock import ManualClock
from wattwise.collector.base import Source
from wattwise.collector.schema import MEASUREMENTS
from wattwise.collector.sim import FleetSpec, SimFleet


def _fleet(clock: ManualClock) -> SimFleet:
    return SimFleet(FleetSpec.uniform(4, 8, racks=2, zones=2, seed=4), clock)


def test_every_reading_uses_schema_fields_with_schema_types_and_tags(clock: ManualClock) -> None:
    fleet = _fleet(clock)
    clock.advance(1.0)
    readings = fleet.read()
    assert {r.measurement for r in readings} == {"gpu", "host", "cooling"}
    for r in readings:
        spec = MEASUREMENTS[r.measurement]
        assert set(r.tags) == set(spec.tags), r.measurement
        assert set(r.fields) <= set(spec.fields), set(r.fields) - set(spec.fields)
        for name, value in r.present_fields().items():
            assert type(value) is spec.fields[name].kind, (r.measurement, name, value)
        assert r.time_ns == clock.time_ns()


def test_counts_and_names_follow_the_layout(clock: ManualClock) -> None:
    fleet = _fleet(clock)
    clock.advance(1.0)
    readings = fleet.read()
    gpus = [r for r in readings if r.measurement == "gpu"]
    hosts = [r for r in readings if r.measurement == "host"]
    assert len(gpus) == 32 and len(hosts) == 4
    assert [r.tags["zone"] for r in readings if r.measurement == "cooling"] == ["z1", "z2"]
    assert all(re.fullmatch(r"sim-r0[12]-n0[12]", r.tags["host"]) for r in hosts)
    assert len({r.tags["uuid"] for r in gpus}) == 32
    # A GPU carries its node's labels.
    by_host = {r.tags["host"]: r.tags for r in hosts}
    for r in gpus:
        assert {k: r.tags[k] for k in ("cluster", "zone", "rack")} == {
            k: by_host[r.tags["host"]][k] for k in ("cluster", "zone", "rack")
        }


def test_uuids_are_the_same_in_every_fleet_with_the_same_hosts() -> None:
    a = _fleet(ManualClock()).layout.gpu_tags
    b = _fleet(ManualClock()).layout.gpu_tags
    assert [t["uuid"] for t in a] == [t["uuid"] for t in b]


def test_gpu_and_node_views_split_the_readings_and_keep_their_own_intervals(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock)
    gpu_view, node_view = fleet.gpu_source(), fleet.node_source()
    assert isinstance(gpu_view, Source) and isinstance(node_view, Source)
    for _ in range(10):
        clock.advance(1.0)
        gpu_readings = gpu_view.read()
    assert {r.measurement for r in gpu_readings} == {"gpu"}
    assert gpu_readings[0].fields["energy_interval_s"] == 1.0
    node_readings = node_view.read()
    assert {r.measurement for r in node_readings} == {"host", "cooling"}
    host = next(r for r in node_readings if r.measurement == "host")
    # The node view was last read at construction, ten seconds ago.
    assert host.fields["cpu_energy_j"] == 10.0 * host.fields["cpu_power_w"]  # type: ignore[operator]


def test_node_power_from_the_bmc_exceeds_its_gpus_power(clock: ManualClock) -> None:
    fleet = _fleet(clock)
    clock.advance(1.0)
    readings = fleet.read()
    gpu_w: dict[str, float] = {}
    for r in readings:
        if r.measurement == "gpu":
            gpu_w[r.tags["host"]] = gpu_w.get(r.tags["host"], 0.0) + r.fields["power_instant_w"]  # type: ignore[operator]
    for r in readings:
        if r.measurement == "host":
            assert r.fields["node_power_w"] > gpu_w[r.tags["host"]]  # type: ignore[operator]
