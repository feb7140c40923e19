"""The twin's hidden truth that evaluations lean on: what-if caps for all GPUs, IT energy,
thermal throttling."""

from __future__ import annotations

import numpy as np

from tests.collector.sim.conftest import COMPUTE_BOUND, MEMORY_BOUND
from wattwise.clock import ManualClock
from wattwise.collector.sim import SimFleet
from wattwise.collector.sim.nodes import PSU_EFFICIENCY


def test_at_power_limits_for_every_gpu_matches_the_one_gpu_answer(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    quiet_node.start_job(host, 1, MEMORY_BOUND)
    clock.advance(20.0)
    quiet_node.sync()
    grid = np.tile(np.array([250.0, 400.0, 700.0]), (8, 1))

    rate, power = quiet_node.truth.at_power_limits(grid)

    assert rate.shape == power.shape == (8, 3)
    for gpu in range(8):
        for k, limit in enumerate(grid[gpu]):
            assert (rate[gpu, k], power[gpu, k]) == quiet_node.truth.at_power_limit(
                host, gpu, float(limit)
            )
    assert rate[0, 0] < rate[0, 2]  # compute-bound work slows under a deep cap


def test_it_energy_integrates_node_power_including_everything_besides_gpus(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    clock.advance(10.0)
    quiet_node.sync()
    before_it, before_gpu = quiet_node.truth.it_energy_j(), quiet_node.truth.energy_j()
    node_w = float(quiet_node.nodes.node_power_w[0])
    clock.advance(10.0)
    quiet_node.sync()

    it_j = quiet_node.truth.it_energy_j() - before_it
    gpu_j = quiet_node.truth.energy_j() - before_gpu
    assert abs(it_j - 10.0 * node_w) < 0.02 * it_j
    assert it_j > gpu_j / PSU_EFFICIENCY  # CPUs, fans and the rest draw power too


def test_thermally_throttled_flags_only_gpus_past_the_thermal_onset(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    host = quiet_node.layout.node_tags[0]["host"]
    quiet_node.start_job(host, 0, COMPUTE_BOUND)
    quiet_node.start_job(host, 1, COMPUTE_BOUND)
    clock.advance(5.0)
    quiet_node.sync()
    assert not quiet_node.truth.thermally_throttled().any()

    quiet_node.temps.die_c[1] = quiet_node.temps.sink_c[1] = 95.0
    clock.advance(0.25)
    quiet_node.sync()

    assert quiet_node.truth.thermally_throttled().tolist() == [False, True] + [False] * 6
