"""The rest of a node around its GPUs: CPUs, memory, fans, power supplies, inlet air."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.collector.sim.dvfs import Floats

CPU_CORES = 112
"""Two 56-core sockets, as in a DGX H100."""
CPU_IDLE_W = 160.0
"""Both sockets at idle."""
CPU_W_PER_PCT = 4.4
"""Added CPU package power per % of CPU utilization (≈ 600 W at 100 %)."""
CPU_BASE_UTIL_PCT = 3.0
CPU_UTIL_PCT_PER_BUSY_GPU = 6.0
"""Data loaders and launch threads keep CPUs busy in step with their GPUs."""
CPU_R_C_PER_W = 0.06
"""CPU package temperature rise per W above its air (heatsink and fan)."""
OTHER_W = 450.0
"""NICs, NVSwitches, drives, memory: the node's draw besides CPUs, GPUs and fans."""
PSU_EFFICIENCY = 0.94
MEM_TOTAL_BYTES = 2 * 1024**4
MEM_BASE_BYTES = 48 * 1024**3
MEM_PER_GPU_JOB_BYTES = 96 * 1024**3
"""Host memory a GPU job pins (pinned buffers, data loader workers) at full GPU memory."""
LOAD_TAU_S = 60.0
"""The kernel's 1-minute load average is an exponential average with this constant."""


@dataclass(slots=True)
class NodeState:
    """What each node's BMC and OS would report, recomputed every sub-step."""

    cpu_util_pct: Floats
    cpu_power_w: Floats
    cpu_temp_c: Floats
    load1: Floats
    mem_used_bytes: Floats
    node_power_w: Floats
    inlet_c: Floats

    @classmethod
    def empty(cls, count: int, inlet_c: Floats) -> NodeState:
        zeros = np.zeros(count)
        return cls(zeros, zeros, zeros, zeros.copy(), zeros, zeros, inlet_c)


def update_nodes(
    state: NodeState,
    *,
    gpu_power_w: Floats,
    busy_gpus: Floats,
    gpu_mem_share: Floats,
    fan_w: Floats,
    dt_s: float,
) -> None:
    """Recompute node quantities from the per-node sums of their GPUs."""
    util = np.clip(CPU_BASE_UTIL_PCT + CPU_UTIL_PCT_PER_BUSY_GPU * busy_gpus, 0.0, 100.0)
    state.cpu_util_pct = util
    state.cpu_power_w = CPU_IDLE_W + CPU_W_PER_PCT * util
    state.cpu_temp_c = state.inlet_c + 12.0 + CPU_R_C_PER_W * state.cpu_power_w / 2.0
    runnable = util / 100.0 * CPU_CORES
    state.load1 = runnable + (state.load1 - runnable) * np.exp(-dt_s / LOAD_TAU_S)
    state.mem_used_bytes = MEM_BASE_BYTES + MEM_PER_GPU_JOB_BYTES * gpu_mem_share
    state.node_power_w = (gpu_power_w + state.cpu_power_w + OTHER_W + fan_w) / PSU_EFFICIENCY
