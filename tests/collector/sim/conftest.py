"""Shared builders for the simulated-fleet tests."""

from __future__ import annotations

import pytest

from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet, WorkloadSpec

COMPUTE_BOUND = WorkloadSpec(
    name="matmul",
    compute=1.0,
    memory=0.33,
    memory_bound=0.0,
    duty_min=1.0,
    duty_max=1.0,
    mean_length_s=3600.0,
)
MEMORY_BOUND = WorkloadSpec(
    name="copy",
    compute=0.05,
    memory=1.0,
    memory_bound=0.95,
    duty_min=1.0,
    duty_max=1.0,
    mean_length_s=3600.0,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def quiet_node(clock: ManualClock) -> SimFleet:
    """One H100 node with no random jobs: tests put exactly the work they need on it."""
    spec = FleetSpec.uniform(1, 8, workloads=(), busy_share=0.0, seed=1)
    return SimFleet(spec, clock)
