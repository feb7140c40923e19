"""Hidden ground truth of the simulated fleet, for judging recommendations against the oracle.

None of this reaches the agent or the store: an evaluation asks it what really
happened (work done, true inlet temperatures) and what would happen under any
other choice (throughput under another cap, inlet temperatures at another
setpoint), without changing the fleet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wattwise.errors import ConfigError

from . import dvfs

if TYPE_CHECKING:
    from .fleet import SimFleet


class GroundTruth:
    """Read-only questions about a :class:`SimFleet` that no sensor could answer."""

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet

    def work_done(self, host: str, gpu: int) -> float:
        """Work finished on one GPU, in seconds of fully busy work at the maximum clock."""
        return float(self._fleet.work[self._fleet.gpu_index(host, gpu)])

    def total_work_done(self) -> float:
        """Work finished by the whole fleet, in GPU-seconds at the maximum clock."""
        return float(self._fleet.work.sum())

    def throughput(self, host: str, gpu: int) -> float:
        """Current work rate of one GPU relative to its job running at the maximum clock."""
        return float(self._fleet.work_rate[self._fleet.gpu_index(host, gpu)])

    def energy_j(self) -> float:
        """Energy all GPUs drew since the fleet started (exact)."""
        return float(self._fleet.energy_j.sum())

    def cooling_energy_j(self) -> float:
        """Energy every zone's cooling drew since the fleet started."""
        return float(self._fleet.cooling_energy_j.sum())

    def inlet_temps(self) -> dict[str, float]:
        """True inlet temperature of every node, by host."""
        tags = self._fleet.layout.node_tags
        return {t["host"]: float(c) for t, c in zip(tags, self._fleet.nodes.inlet_c, strict=True)}

    def at_power_limit(self, host: str, gpu: int, watts: float) -> tuple[float, float]:
        """(throughput, power_w) the GPU's current job would run at under ``watts``.

        Throughput is relative to the job at the maximum clock; the job, duty and
        die temperature are today's. The fleet is not changed.
        """
        f = self._fleet
        i = f.gpu_index(host, gpu)
        f.models[i].check_limit(watts)
        one = slice(i, i + 1)
        params = dvfs.GpuParams(
            **{n: getattr(f.params, n)[one] for n in dvfs.GpuParams.__dataclass_fields__}
        )
        op = dvfs.solve(
            params,
            has_job=f.jobs.has_job[one],
            busy=f.jobs.duty[one],
            compute=f.jobs.compute[one],
            memory=f.jobs.memory[one],
            temp_c=f.temps.die_c[one],
            limit_w=np.array([watts]),
        )
        clock_rel = op.sm_clock_mhz / params.max_sm_clock_mhz
        rate = op.busy * dvfs.throughput(clock_rel, f.jobs.memory_bound[one])
        return float(rate[0]), float(op.power_w[0])

    def inlet_temps_at_setpoint(self, zone: str, celsius: float) -> dict[str, float]:
        """Steady inlet temperature of each node of ``zone`` at another setpoint, today's load."""
        f = self._fleet
        if zone not in f.layout.zones:
            raise ConfigError("zone", zone, ", ".join(f.layout.zones))
        z = f.layout.zones.index(zone)
        supply = f.supply_c.copy()
        supply[z] = celsius
        inlet = f.inlet_c_at(f.rack_power_w(), supply)
        tags = f.layout.node_tags
        return {t["host"]: float(inlet[n]) for n, t in enumerate(tags) if t["zone"] == zone}
