"""What fleets the twin accepts: racks small enough to cool."""

from __future__ import annotations

import pytest

from wattwise.collector.sim import FleetSpec, NodeSpec
from wattwise.collector.sim.spec import MAX_NODES_PER_RACK
from wattwise.errors import ConfigError


def _rack(name: str, nodes: int) -> tuple[NodeSpec, ...]:
    return tuple(
        NodeSpec(host=f"{name}-n{slot:03d}", cluster="c", zone="z1", rack=name, slot=slot)
        for slot in range(nodes)
    )


def test_fleet_spec_refuses_rack_too_large_to_cool() -> None:
    """≈12,000 GPUs in one rack: its recirculated exhaust and leakage heated it to inf/NaN."""
    with pytest.raises(ConfigError) as refused:
        FleetSpec.uniform(1500, 8, racks=1)
    assert refused.value.key == "rack 'r01' nodes"
    assert refused.value.value == 1500
    assert "1–64 per rack" in str(refused.value)


def test_fleet_spec_accepts_full_racks_and_refuses_one_node_more() -> None:
    full = FleetSpec(nodes=_rack("a", MAX_NODES_PER_RACK) + _rack("b", MAX_NODES_PER_RACK))
    assert len(full.nodes) == 2 * MAX_NODES_PER_RACK
    with pytest.raises(ConfigError, match="rack 'b' nodes: 65"):
        FleetSpec(nodes=_rack("a", 3) + _rack("b", MAX_NODES_PER_RACK + 1))


def test_uniform_fleet_of_many_nodes_is_legal_when_spread_over_enough_racks() -> None:
    spec = FleetSpec.uniform(1500, 8, racks=-(-1500 // MAX_NODES_PER_RACK))
    assert len({n.rack for n in spec.nodes}) == 24
