"""Node power states under the site's power saving: awake, asleep (powered down), resuming.

A node goes to sleep once none of its GPUs has had a job for ``suspend_after_s``
(powering down is taken as instant). A job started on a sleeping node wakes it:
the node boots for ``resume_s``, drawing what an idle awake node draws, and the
job waits. Only an awake node runs jobs and has its OS and agent up; a sleeping
or booting node answers only through its BMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.collector.sim.dvfs import Bools, Floats, Ints, OperatingPoint
from wattwise.collector.sim.nodes import NodeState
from wattwise.collector.sim.spec import PowerSaving

AWAKE, ASLEEP, RESUMING = 0, 1, 2
STATE_NAMES = ("awake", "asleep", "resuming")


@dataclass(slots=True)
class PowerStates:
    """Power state of every node, and how long each has been idle or has left to boot."""

    saving: PowerSaving | None
    state: Ints
    idle_s: Floats
    """Time an awake node has had no job on any GPU."""
    resume_left_s: Floats

    @classmethod
    def all_awake(cls, saving: PowerSaving | None, nodes: int) -> PowerStates:
        return cls(saving, np.full(nodes, AWAKE, dtype=np.int64), np.zeros(nodes), np.zeros(nodes))

    @property
    def up(self) -> Bools:
        """Nodes whose OS is up: they run jobs and their agent reports."""
        return np.asarray(self.state == AWAKE)

    @property
    def asleep(self) -> Bools:
        return np.asarray(self.state == ASLEEP)

    def step(self, node_has_job: Bools, dt_s: float) -> None:
        """Advance by ``dt_s``: finish boots, wake nodes given a job, put idle nodes to sleep."""
        saving = self.saving
        if saving is None:
            return
        booting = self.state == RESUMING
        self.resume_left_s = np.where(booting, self.resume_left_s - dt_s, 0.0)
        booted = booting & (self.resume_left_s <= 1e-9)
        woken = (self.state == ASLEEP) & node_has_job
        self.state[booted] = AWAKE
        self.state[woken] = AWAKE if saving.resume_s <= 0 else RESUMING
        self.resume_left_s[woken] = saving.resume_s
        awake = self.state == AWAKE
        self.idle_s = np.where(awake & ~node_has_job, self.idle_s + dt_s, 0.0)
        self.state[awake & (self.idle_s >= saving.suspend_after_s)] = ASLEEP

    def powered_down(self, op: OperatingPoint, gpu_node: Ints) -> OperatingPoint:
        """``op`` with the GPUs of sleeping nodes drawing nothing (their boards are off)."""
        if self.saving is None:
            return op
        on = ~self.asleep[gpu_node]
        return OperatingPoint(
            sm_clock_mhz=np.where(on, op.sm_clock_mhz, 0.0),
            power_w=np.where(on, op.power_w, 0.0),
            busy=op.busy,
            memory_power_w=np.where(on, op.memory_power_w, 0.0),
            reasons=op.reasons,
            burst_power_w=np.where(on, op.burst_power_w, 0.0),
            static_power_w=np.where(on, op.static_power_w, 0.0),
        )

    def standby(self, nodes: NodeState) -> None:
        """Sleeping nodes: no CPU, fans or load, only the standby draw at the wall."""
        if self.saving is None:
            return
        off = self.asleep
        for name in ("cpu_util_pct", "cpu_power_w", "load1"):
            setattr(nodes, name, np.where(off, 0.0, getattr(nodes, name)))
        nodes.cpu_temp_c = np.where(off, nodes.inlet_c, nodes.cpu_temp_c)
        nodes.mem_used_bytes = np.where(off, 0.0, nodes.mem_used_bytes)
        nodes.node_power_w = np.where(off, self.saving.standby_w, nodes.node_power_w)
