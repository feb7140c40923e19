"""Readings of the simulated fleet, shaped exactly as the real sources shape theirs.

Three sources share one fleet: :class:`GpuView` (``gpu`` readings, for a 1 s
tick), :class:`NodeView` (``host`` and ``cooling``, for a slower tick) and
:class:`FleetView` (all of them, what ``SimFleet.read`` returns). Each keeps its
own energy counters, so its ``energy_j`` and ``cpu_energy_j`` cover exactly the
time since its own previous read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.sim.faults import NVLINK_LINKS

if TYPE_CHECKING:
    from wattwise.collector.sim.fleet import SimFleet

DRIVER_RESERVED_BYTES = 512 * 1024**2
"""Device memory the driver holds on every GPU, job or not."""
PCIE_RX_BYTES_PER_S, PCIE_TX_BYTES_PER_S = 2.0e9, 0.5e9
"""PCIe traffic of a fully busy, fully memory-bound job (a tenth of a Gen5 x16 link)."""


class _Since:
    """A cumulative array and the fleet time at this view's previous read.

    An element whose device was not reporting at the previous take (its node was
    powered down or booting) has no increase to give: its counter restarted with
    the driver, as a real one would after a boot.
    """

    def __init__(self, fleet: SimFleet, total: np.ndarray) -> None:
        self._fleet = fleet
        self._last = total.copy()
        self._last_s = fleet.sync_time_s
        self._reported = np.ones(len(total), dtype=np.bool_)

    def take(
        self, total: np.ndarray, reporting: np.ndarray
    ) -> tuple[list[float | None], float | None]:
        """Increase of ``total`` since the previous take, and the interval in seconds."""
        interval_s = self._fleet.sync_time_s - self._last_s
        delta = total - self._last
        known = self._reported.tolist()
        self._last, self._last_s = total.copy(), self._fleet.sync_time_s
        self._reported = reporting.copy()
        if interval_s <= 0:
            return [None] * len(delta), None
        return [float(v) if k else None for v, k in zip(delta.tolist(), known, strict=True)], (
            interval_s
        )


class GpuView:
    """Source of ``gpu`` readings of every simulated GPU."""

    name = "sim-gpu"

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._energy = _Since(fleet, fleet.energy_j)

    def read(self) -> Sequence[Reading]:
        self._fleet.sync()
        return [*xid_readings(self._fleet), *gpu_readings(self._fleet, self._energy)]

    def close(self) -> None:
        """Nothing to release."""


class NodeView:
    """Source of ``host`` readings (OS and BMC values) of every node, and ``cooling`` per zone."""

    name = "sim-node"

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._cpu_energy = _Since(fleet, fleet.cpu_energy_j)

    def read(self) -> Sequence[Reading]:
        self._fleet.sync()
        return [*host_readings(self._fleet, self._cpu_energy), *cooling_readings(self._fleet)]

    def close(self) -> None:
        """Nothing to release."""


class JobView:
    """Source of ``gpu_job`` readings: one per GPU running a job, numbered as jobs start.

    The twin's jobs have no ids, so this view gives each job it sees start an
    id of its own (``sim-<n>``, as a Slurm job id would be).
    """

    name = "sim-job"

    def __init__(self, fleet: SimFleet) -> None:
        self._fleet = fleet
        self._remaining_s = np.full(fleet.layout.gpu_count, np.inf)
        self._ids: list[str | None] = [None] * fleet.layout.gpu_count
        self._started = 0

    def read(self) -> Sequence[Reading]:
        self._fleet.sync()
        jobs = self._fleet.jobs
        for i in np.flatnonzero(jobs.has_job).tolist():
            # A job's remaining time only falls; a rise means a new job began.
            if self._ids[i] is None or jobs.remaining_s[i] > self._remaining_s[i]:
                self._started += 1
                self._ids[i] = f"sim-{self._started}"
        for i in np.flatnonzero(~jobs.has_job).tolist():
            self._ids[i] = None
        self._remaining_s = jobs.remaining_s.copy()
        return job_readings(self._fleet, self._ids)

    def close(self) -> None:
        """Nothing to release."""


class FleetView:
    """Source of every reading of the fleet at once."""

    name = "sim"

    def __init__(self, fleet: SimFleet) -> None:
        self._gpus = GpuView(fleet)
        self._nodes = NodeView(fleet)

    def read(self) -> Sequence[Reading]:
        return [*self._gpus.read(), *self._nodes.read()]

    def close(self) -> None:
        """Nothing to release."""


def gpu_readings(fleet: SimFleet, energy: _Since) -> list[Reading]:
    """One ``gpu`` reading per GPU of every node that is up, as the NVML source would
    produce it (a powered-down or booting node has no OS to run the agent)."""
    now_ns = fleet.clock.time_ns()
    op, jobs, temps = fleet.op, fleet.jobs, fleet.temps
    up = fleet.power.up[fleet.layout.node_of_gpu]
    energy_j, interval_s = energy.take(fleet.energy_j, up)
    mem_total = [m.mem_total_bytes for m in fleet.models]
    columns = {
        "power_w": fleet.trailing_power_w().tolist(),
        "power_instant_w": instant_power_w(fleet, now_ns).tolist(),
        "temp_c": np.round(temps.die_c, 1).tolist(),
        "mem_temp_c": np.round(temps.mem_c, 1).tolist(),
        "sm_clock_mhz": op.sm_clock_mhz.tolist(),
        "util_gpu_pct": np.round(100.0 * op.busy, 1).tolist(),
        "util_mem_pct": np.round(100.0 * op.busy * jobs.memory, 1).tolist(),
        "power_limit_w": fleet.limit_w.tolist(),
        "clock_event_reasons": op.reasons.tolist(),
        **gpm_activities(fleet),
    }
    faults = fleet.faults
    columns |= {
        "ecc_corrected_total": faults.ecc_corrected.tolist(),
        "ecc_uncorrected_total": faults.ecc_uncorrected.tolist(),
        "remapped_rows_correctable": faults.remapped_correctable.tolist(),
        "remapped_rows_uncorrectable": faults.remapped_uncorrectable.tolist(),
        "remapped_rows_pending": faults.remap_pending.astype(np.int64).tolist(),
        "remapped_rows_failed": faults.remap_failed.astype(np.int64).tolist(),
        "ecc_corrected_aggregate_total": faults.ecc_corrected_aggregate.tolist(),
        "ecc_uncorrected_aggregate_total": faults.ecc_uncorrected_aggregate.tolist(),
        "nvlink_replay_errors_total": faults.nvlink_errors.tolist(),
        "nvlink_links_up": (NVLINK_LINKS - faults.nvlink_links_down).tolist(),
        # the job's input pipeline: host-to-device traffic grows with its memory-boundness
        "pcie_rx_bytes_per_s": np.round(PCIE_RX_BYTES_PER_S * op.busy * jobs.memory).tolist(),
        "pcie_tx_bytes_per_s": np.round(PCIE_TX_BYTES_PER_S * op.busy * jobs.memory).tolist(),
    }
    mem_used = (jobs.mem_fraction * np.array(mem_total)).astype(np.int64) + DRIVER_RESERVED_BYTES
    used = np.minimum(mem_used, np.array(mem_total)).tolist()
    lost = faults.lost.tolist()
    readings = []
    for i in np.flatnonzero(up).tolist():
        tags, model = fleet.layout.gpu_tags[i], fleet.models[i]
        if lost[i]:  # fell off the bus: the NVML source reads nothing but the failure
            readings.append(Reading("gpu", tags, {"failed": 1}, now_ns))
            continue
        fields: dict[str, FieldValue | None] = {name: col[i] for name, col in columns.items()}
        fields.update(
            energy_j=energy_j[i],
            energy_interval_s=interval_s,
            slowdown_temp_c=model.slowdown_temp_c,
            mem_clock_mhz=model.mem_clock_mhz,
            mem_used_bytes=used[i],
            mem_total_bytes=model.mem_total_bytes,
            enforced_limit_w=fields["power_limit_w"],
            min_limit_w=model.min_limit_w,
            max_limit_w=model.max_limit_w,
            default_limit_w=model.default_limit_w,
            nvlink_links=NVLINK_LINKS,
            failed=0,
        )
        readings.append(Reading("gpu", tags, fields, now_ns))
    return readings


TENSOR_SHARE = 0.8
"""Share of its SMs' power a kernel spends in the tensor pipes (matmul-heavy work)."""


def gpm_activities(fleet: SimFleet) -> dict[str, list[float | None]]:
    """What GPM would read on the GPUs that have it (Hopper): SMs busy while kernels run,
    DRAM bandwidth and the tensor pipes in proportion to the kernels' memory and SM
    activity; missing (None) on the others."""
    op, jobs = fleet.op, fleet.jobs
    has = np.array([m.gpm for m in fleet.models])
    values = {
        "sm_active_pct": 100.0 * op.busy,
        "sm_occupancy_pct": 100.0 * op.busy * (0.25 + 0.5 * jobs.compute),
        "dram_active_pct": 100.0 * op.busy * jobs.memory,
        "tensor_active_pct": 100.0 * op.busy * TENSOR_SHARE * jobs.compute,
    }
    return {
        name: [round(float(v), 1) if h else None for v, h in zip(col, has, strict=True)]
        for name, col in values.items()
    }


GOLDEN = 0.6180339887498949
PLASTIC = 0.7548776662466927


def instant_power_w(fleet: SimFleet, now_ns: int) -> np.ndarray:
    """What an instantaneous power reading catches: a burst with the probability that kernels
    run, the power between them otherwise. Which one is a low-discrepancy sequence of the
    reading's time and the GPU, not a random draw, so reading more often or less never
    changes the fleet's own random sequence (its jobs)."""
    op = fleet.op
    index = np.arange(op.busy.shape[0])
    phase = ((now_ns // 1_000_000) * GOLDEN + index * PLASTIC) % 1.0
    return np.where(phase < op.busy, op.burst_power_w, np.minimum(op.static_power_w, op.power_w))


def xid_readings(fleet: SimFleet) -> list[Reading]:
    """One ``gpu_xid`` reading per GPU and XID code raised since the previous read."""
    now_ns = fleet.clock.time_ns()
    readings = []
    for i, codes in fleet.faults.take_events():
        for code in sorted(set(codes)):
            tags = {**fleet.layout.gpu_tags[i], "xid": str(code)}
            readings.append(Reading("gpu_xid", tags, {"count": codes.count(code)}, now_ns))
    return readings


def host_readings(fleet: SimFleet, cpu_energy: _Since) -> list[Reading]:
    """One ``host`` reading per node: OS values plus the BMC's inlet temperature and power.
    A node that is powered down or booting has no OS values: only its BMC answers."""
    now_ns = fleet.clock.time_ns()
    state = fleet.nodes
    up = fleet.power.up.tolist()
    energy_j, interval_s = cpu_energy.take(fleet.cpu_energy_j, fleet.power.up)
    bmc = {
        "inlet_temp_c": np.round(state.inlet_c, 1).tolist(),
        "node_power_w": np.round(state.node_power_w, 1).tolist(),
    }
    columns = {
        "cpu_util_pct": np.round(state.cpu_util_pct, 1).tolist(),
        "load1": np.round(state.load1, 2).tolist(),
        "mem_used_bytes": state.mem_used_bytes.astype(np.int64).tolist(),
        "cpu_temp_c": np.round(state.cpu_temp_c, 1).tolist(),
        **bmc,
    }
    readings = []
    for i, tags in enumerate(fleet.layout.node_tags):
        if not up[i]:
            only: dict[str, FieldValue | None] = {name: col[i] for name, col in bmc.items()}
            readings.append(Reading("host", tags, only, now_ns))
            continue
        fields: dict[str, FieldValue | None] = {name: col[i] for name, col in columns.items()}
        e = energy_j[i]
        fields.update(
            mem_total_bytes=fleet.node_mem_total_bytes,
            cpu_energy_j=e,
            cpu_power_w=None if e is None or interval_s is None else e / interval_s,
        )
        readings.append(Reading("host", tags, fields, now_ns))
    return readings


def cooling_readings(fleet: SimFleet) -> list[Reading]:
    """One ``cooling`` reading per zone, as a building-management integration would write."""
    now_ns = fleet.clock.time_ns()
    lay = fleet.layout
    return_c = fleet.supply_c + fleet.it_power_w / fleet.airflow_w_per_c
    return [
        Reading(
            "cooling",
            {"cluster": lay.zone_cluster[z], "zone": zone},
            {
                "supply_temp_c": round(float(fleet.supply_c[z]), 2),
                "setpoint_c": float(fleet.setpoint_c[z]),
                "return_temp_c": round(float(return_c[z]), 2),
                "cooling_power_w": round(float(fleet.cooling_power_w[z]), 1),
                "it_power_w": round(float(fleet.it_power_w[z]), 1),
            },
            now_ns,
        )
        for z, zone in enumerate(lay.zones)
    ]


def job_readings(fleet: SimFleet, job_ids: Sequence[str | None]) -> list[Reading]:
    """One ``gpu_job`` reading per GPU with a job: its memory and the GPU's power."""
    now_ns = fleet.clock.time_ns()
    power_w = fleet.trailing_power_w().tolist()
    readings = []
    up = fleet.power.up[fleet.layout.node_of_gpu].tolist()
    for i, job in enumerate(job_ids):
        if job is None or not up[i]:
            continue
        tags = fleet.layout.gpu_tags[i]
        job_tags = {k: tags[k] for k in ("host", "cluster", "zone", "rack", "gpu")}
        mem_bytes = int(fleet.jobs.mem_fraction[i] * fleet.models[i].mem_total_bytes)
        fields: dict[str, FieldValue | None] = {
            "processes": 1,
            "used_mem_bytes": mem_bytes,
            "power_w": float(power_w[i]),
        }
        readings.append(
            Reading("gpu_job", {**job_tags, "job": job, "scheduler": "slurm"}, fields, now_ns)
        )
    return readings
