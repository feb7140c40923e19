"""The simulated fleet: state of every GPU, node and cooling zone, advanced by the clock.

Physics state lives here as numpy arrays over all GPUs (and nodes, racks,
zones), so one step costs the same few dozen array operations for 64 or 10,000
GPUs. Readings are built by :mod:`.views`; the control and ground-truth methods
below are for evaluations and never reach the agent.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from wattwise.clock import Clock
from wattwise.collector.base import Reading
from wattwise.collector.sim import dvfs, nodes, thermal, views
from wattwise.collector.sim.dvfs import Floats, Ints
from wattwise.collector.sim.faults import GpuFaults
from wattwise.collector.sim.layout import Layout
from wattwise.collector.sim.models import gpu_model
from wattwise.collector.sim.power import PowerStates
from wattwise.collector.sim.spec import FleetSpec
from wattwise.collector.sim.truth import GroundTruth
from wattwise.collector.sim.truths import under_truth
from wattwise.collector.sim.workload import Jobs, Scheduler, WorkloadSpec
from wattwise.errors import ConfigError

MAX_SUBSTEP_S = 0.25
TRAILING_WINDOW_S = 1.0
"""NVML's power reading on Hopper averages the last second."""
SETPOINT_RANGE_C = (10.0, 35.0)


class SimFleet:
    """A seeded physical twin of a GPU fleet that reads like real hardware.

    ``read()`` advances the physics to the clock's present and returns ``gpu``,
    ``host`` and ``cooling`` readings; :meth:`gpu_source` and :meth:`node_source`
    give separate sources for agents that read GPUs and nodes at different rates.
    """

    name = "sim"
    node_mem_total_bytes = nodes.MEM_TOTAL_BYTES

    def __init__(self, spec: FleetSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self.layout = Layout.of(spec)
        self.models = [
            under_truth(gpu_model(spec.nodes[n].gpu_model), spec.truth)
            for n in self.layout.node_of_gpu
        ]
        self.params = dvfs.GpuParams.of(self.models)
        count = self.layout.gpu_count
        rng = np.random.default_rng(spec.seed)
        self._rng = rng
        self.limit_w = np.array([m.default_limit_w for m in self.models])
        self.locked_clock_mhz = np.full(count, np.inf)
        self.jobs = Jobs.idle(count)
        self.scheduler = Scheduler(spec.workloads, spec.idle_gap_mean_s, rng)
        self.scheduler.populate(self.jobs, spec.busy_share)
        zones = len(self.layout.zones)
        self.setpoint_c = np.full(zones, spec.setpoint_c)
        self.supply_c = self.setpoint_c.copy()
        racks = len(self.layout.racks)
        air = spec.airflow
        self.rack_offset_c = rng.uniform(0.0, air.rack_offset_max_c, racks)
        edge = np.where(self.layout.rack_is_row_end, air.edge_recirculation_factor, 1.0)
        self.recirculation_c_per_kw = air.recirculation_c_per_kw * edge
        max_limit_w = np.array([m.max_limit_w for m in self.models])
        # Air handlers are sized for the zone at full load, GPUs being ~2/3 of node power.
        design_w = 1.5 * np.bincount(self.layout.zone_of_gpu, weights=max_limit_w, minlength=zones)
        self.airflow_w_per_c = design_w / spec.cooling.design_delta_c
        self.energy_j = np.zeros(count)
        self.work = np.zeros(count)
        self.faults = GpuFaults(count, spec.faults, spec.seed)
        self.cpu_energy_j = np.zeros(self.layout.node_count)
        self.cooling_energy_j = np.zeros(zones)
        self.node_energy_j = np.zeros(self.layout.node_count)
        self.nodes = nodes.NodeState.empty(self.layout.node_count, self.inlet_c_at(np.zeros(racks)))
        self.power = PowerStates.all_awake(spec.power_saving, self.layout.node_count)
        self.op = self._solve(np.full(count, 40.0))
        self.temps = thermal.GpuTemps.settled(self.params, self._gpu_air_c(), self.op.power_w)
        self.work_rate = np.zeros(count)
        self.it_power_w = np.zeros(zones)
        self.cooling_power_w = np.zeros(zones)
        self._history: deque[tuple[float, np.ndarray]] = deque()
        self._last_s = clock.monotonic()
        self._step(0.0)
        self._all = views.FleetView(self)
        self.truth = GroundTruth(self)
        """Hidden ground truth for evaluations; the agent only ever sees readings."""

    # ---- time -------------------------------------------------------------------------------

    @property
    def sync_time_s(self) -> float:
        """Monotonic time the physics has been advanced to."""
        return self._last_s

    def sync(self) -> None:
        """Advance the physics to the clock's present (sub-stepped, at most 0.25 s a step)."""
        now = self.clock.monotonic()
        dt = now - self._last_s
        if dt <= 0:
            return
        self._last_s = now
        substeps = math.ceil(dt / MAX_SUBSTEP_S)
        for _ in range(substeps):
            self._step(dt / substeps)

    def _step(self, dt_s: float) -> None:
        lay = self.layout
        # A job waiting for its node to boot has not started: its clock does not run.
        self.scheduler.step(self.jobs, dt_s, paused=~self.power.up[lay.node_of_gpu])
        busy_nodes = _sum_by(lay.node_of_gpu, self.jobs.has_job.astype(np.float64), lay.node_count)
        self.power.step(busy_nodes > 0, dt_s)
        self.op = self.power.powered_down(self._solve(self.temps.die_c), lay.node_of_gpu)
        self.temps.step(
            self.params, self._gpu_air_c(), self.op.power_w, self.op.memory_power_w, dt_s
        )
        clock_rel = self.op.sm_clock_mhz / self.params.max_sm_clock_mhz
        self.work_rate = self.op.busy * dvfs.throughput(
            clock_rel, self.jobs.memory_bound, self.params.roofline_sharpness
        )
        self.energy_j += self.op.power_w * dt_s
        self.work += self.work_rate * dt_s
        self._remember_power(dt_s)
        self._step_nodes_and_zones(dt_s)
        self.faults.step(dt_s)

    def _solve(self, temp_c: np.ndarray) -> dvfs.OperatingPoint:
        up = self.power.up[self.layout.node_of_gpu]
        return dvfs.solve(
            self.params,
            has_job=self.jobs.has_job & up,
            busy=self.scheduler.jittered_duty(self.jobs) * up,
            compute=self.jobs.compute,
            memory=self.jobs.memory,
            burst_enforcement=self.jobs.burst_enforcement,
            temp_c=temp_c,
            limit_w=self.limit_w,
            locked_clock_mhz=self.locked_clock_mhz,
        )

    def _step_nodes_and_zones(self, dt_s: float) -> None:
        lay = self.layout
        gpus_per_node = _sum_by(lay.node_of_gpu, np.ones(lay.gpu_count), lay.node_count)
        nodes.update_nodes(
            self.nodes,
            gpu_power_w=_sum_by(lay.node_of_gpu, self.op.power_w, lay.node_count),
            busy_gpus=_sum_by(lay.node_of_gpu, self.op.busy, lay.node_count),
            gpu_mem_share=_sum_by(lay.node_of_gpu, self.jobs.mem_fraction, lay.node_count)
            / gpus_per_node,
            fan_w=thermal.fan_power_w(self.spec.cooling, self.nodes.inlet_c),
            dt_s=dt_s,
        )
        self.power.standby(self.nodes)
        self.cpu_energy_j += self.nodes.cpu_power_w * dt_s
        self.node_energy_j += self.nodes.node_power_w * dt_s
        cooling = self.spec.cooling
        self.supply_c = thermal.relax(self.supply_c, self.setpoint_c, dt_s, cooling.supply_tau_s)
        self.it_power_w = _sum_by(lay.zone_of_node, self.nodes.node_power_w, len(lay.zones))
        cop = thermal.coefficient_of_performance(cooling, self.supply_c)
        self.cooling_power_w = self.it_power_w / cop
        self.cooling_energy_j += self.cooling_power_w * dt_s
        self.nodes.inlet_c = self.inlet_c_at(self.rack_power_w())

    def rack_power_w(self) -> Floats:
        """Input power of every rack (sum of its nodes' BMC power)."""
        lay = self.layout
        return _sum_by(lay.rack_of_node, self.nodes.node_power_w, len(lay.racks))

    def inlet_c_at(self, rack_power_w: Floats, supply_c: Floats | None = None) -> Floats:
        """Node inlet temperatures for given rack powers and zone supply temperatures."""
        lay = self.layout
        supply = self.supply_c if supply_c is None else supply_c
        rack_rise = self.rack_offset_c + self.recirculation_c_per_kw * rack_power_w / 1000.0
        slot_rise = self.spec.airflow.slot_rise_c * lay.slot_of_node
        return supply[lay.zone_of_node] + rack_rise[lay.rack_of_node] + slot_rise

    def _gpu_air_c(self) -> Floats:
        return self.nodes.inlet_c[self.layout.node_of_gpu] + thermal.GPU_AIR_PREHEAT_C

    def _remember_power(self, dt_s: float) -> None:
        self._history.append((dt_s, self.op.power_w))
        while sum(d for d, _ in self._history) - self._history[0][0] >= TRAILING_WINDOW_S:
            self._history.popleft()

    def trailing_power_w(self) -> np.ndarray:
        """Mean true power over the last second (what NVML's power reading reports)."""
        total_s = 0.0
        energy = np.zeros(self.layout.gpu_count)
        for dt_s, power_w in reversed(self._history):
            used = min(dt_s, TRAILING_WINDOW_S - total_s)
            if used <= 0:
                break
            energy += power_w * used
            total_s += used
        return energy / total_s if total_s > 0 else self.op.power_w.copy()

    # ---- readings ---------------------------------------------------------------------------

    def read(self) -> Sequence[Reading]:
        """GPU, host and cooling readings at the clock's present."""
        return self._all.read()

    def gpu_source(self) -> views.GpuView:
        """A source that yields only this fleet's ``gpu`` readings (name ``sim-gpu``)."""
        return views.GpuView(self)

    def node_source(self) -> views.NodeView:
        """A source that yields ``host`` and ``cooling`` readings (name ``sim-node``)."""
        return views.NodeView(self)

    def close(self) -> None:
        """Nothing to release; present for the Source interface."""

    # ---- control (what an operator or the optimizer may change) ----------------------------

    def gpu_index(self, host: str, gpu: int) -> int:
        """Position of GPU ``gpu`` of ``host`` in the state arrays."""
        try:
            return self.layout.gpu_index[(host, gpu)]
        except KeyError:
            raise ConfigError("gpu", f"{host}/{gpu}", "a host and GPU of this fleet") from None

    def set_power_limit(self, host: str, gpu: int, watts: float) -> None:
        """Set a GPU's power limit, as ``nvmlDeviceSetPowerManagementLimit`` would."""
        index = self.gpu_index(host, gpu)
        self.models[index].check_limit(watts)
        self.sync()
        self.limit_w[index] = watts

    def lock_clock(self, host: str, gpu: int, mhz: float | None) -> None:
        """Hold a GPU's SM clock at or under ``mhz`` (``None`` unlocks), as
        ``nvmlDeviceSetGpuLockedClocks`` would; the calibration against published clock
        sweeps uses it."""
        index = self.gpu_index(host, gpu)
        self.sync()
        self.locked_clock_mhz[index] = np.inf if mhz is None else mhz

    def set_setpoint(self, zone: str, celsius: float) -> None:
        """Set a zone's supply temperature setpoint; the supply air follows within minutes."""
        if zone not in self.layout.zones:
            raise ConfigError("zone", zone, ", ".join(self.layout.zones))
        low, high = SETPOINT_RANGE_C
        if not low <= celsius <= high:
            raise ConfigError("setpoint_c", celsius, f"{low:g}–{high:g} °C")
        self.sync()
        self.setpoint_c[self.layout.zones.index(zone)] = celsius

    def start_job(
        self, host: str, gpu: int, workload: WorkloadSpec, length_s: float = math.inf
    ) -> None:
        """Run ``workload`` on one GPU from now (at its ``duty_max``) for ``length_s``."""
        index = self.gpu_index(host, gpu)
        self.sync()
        kind = len(self.scheduler.workloads)
        self.jobs.start(index, kind, workload, workload.duty_max, length_s)

    def raise_xid(self, host: str, gpu: int, code: int) -> None:
        """The driver reports XID ``code`` on one GPU, with its consequence (see :mod:`.faults`)."""
        index = self.gpu_index(host, gpu)
        self.sync()
        self.faults.raise_xid(index, code)

    def reset_gpu(self, host: str, gpu: int) -> None:
        """Reset one GPU: a pending row remapping takes effect, a lost GPU answers again."""
        index = self.gpu_index(host, gpu)
        self.sync()
        self.faults.reset(index)

    def stop_job(self, host: str, gpu: int, idle_s: float = math.inf) -> None:
        """End the job on one GPU; it stays idle for ``idle_s``."""
        index = self.gpu_index(host, gpu)
        self.sync()
        self.jobs.stop(index, idle_s)


def _sum_by(group: Ints, values: Floats, groups: int) -> Floats:
    """Sum of ``values`` per group (GPUs per node, nodes per rack or zone)."""
    return np.bincount(group, weights=values, minlength=groups).astype(np.float64)
