"""Hidden ground truth of the simulated fleet, for judging recommendations against the oracle.

None of this reaches the agent or the store: an evaluation asks it what really
happened (work done, true inlet temperatures) and what would happen under any
other choice (throughput under another cap, inlet temperatures at another
setpoint), without changing the fleet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wattwise.collector.sim import dvfs
from wattwise.collector.sim.dvfs import Bools, Floats
from wattwise.collector.sim.power import STATE_NAMES
from wattwise.errors import ConfigError

if TYPE_CHECKING:
    from wattwise.collector.sim.fleet import SimFleet


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

    def it_energy_j(self) -> float:
        """Energy every node drew at its power supplies (GPUs, CPUs, fans, the rest, and the
        standby draw of powered-down nodes) since start."""
        return float(self._fleet.node_energy_j.sum())

    def power_states(self) -> dict[str, str]:
        """``awake``, ``asleep`` (powered down) or ``resuming`` (booting), by host."""
        tags, state = self._fleet.layout.node_tags, self._fleet.power.state.tolist()
        return {t["host"]: STATE_NAMES[s] for t, s in zip(tags, state, strict=True)}

    def thermally_throttled(self) -> Bools:
        """Per GPU (state order): is its clock held down by the thermal controller right now?"""
        return np.asarray(self._fleet.op.reasons & dvfs.REASON_SW_THERMAL > 0, dtype=np.bool_)

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
            has_job=self._running()[one],
            busy=f.jobs.duty[one],
            compute=f.jobs.compute[one],
            memory=f.jobs.memory[one],
            burst_enforcement=f.jobs.burst_enforcement[one],
            temp_c=f.temps.die_c[one],
            limit_w=np.array([watts]),
            locked_clock_mhz=f.locked_clock_mhz[one],
        )
        clock_rel = op.sm_clock_mhz / params.max_sm_clock_mhz
        rate = op.busy * dvfs.throughput(
            clock_rel, f.jobs.memory_bound[one], params.roofline_sharpness
        )
        return float(rate[0]), float(op.power_w[0])

    def at_power_limits(self, limits_w: Floats) -> tuple[Floats, Floats]:
        """Vectorised :meth:`at_power_limit` for every GPU at once (state order).

        ``limits_w`` is shaped (GPUs,) or (GPUs, K) for K candidate limits per GPU;
        the answer (throughput, power_w) has the same shape. Limits are not checked.
        """
        f = self._fleet
        limits = np.asarray(limits_w, dtype=np.float64)
        col = (slice(None), None) if limits.ndim == 2 else (slice(None),)
        params = dvfs.GpuParams(
            **{n: getattr(f.params, n)[col] for n in dvfs.GpuParams.__dataclass_fields__}
        )
        op = dvfs.solve(
            params,
            has_job=self._running()[col],
            busy=f.jobs.duty[col],
            compute=f.jobs.compute[col],
            memory=f.jobs.memory[col],
            burst_enforcement=f.jobs.burst_enforcement[col],
            temp_c=f.temps.die_c[col],
            limit_w=limits,
            locked_clock_mhz=f.locked_clock_mhz[col],
        )
        clock_rel = op.sm_clock_mhz / params.max_sm_clock_mhz
        rate = op.busy * dvfs.throughput(
            clock_rel, f.jobs.memory_bound[col], params.roofline_sharpness
        )
        return np.asarray(rate, dtype=np.float64), np.asarray(op.power_w, dtype=np.float64)

    def _running(self) -> Bools:
        """GPUs whose job runs: a job waiting for its node to boot draws nothing yet."""
        f = self._fleet
        return np.asarray(f.jobs.has_job & f.power.up[f.layout.node_of_gpu], dtype=np.bool_)

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
