"""What the optimizer reads: the store interface and the frames it returns.

Both stores (InfluxDB over InfluxQL, and the embedded SQLite store) implement
:class:`TelemetryStore`, and a shared contract-test suite holds them to the
same answers. Series are aggregated in the store (``GROUP BY time``), never
pulled as raw rows for a fleet. Missing values are ``NaN`` in float columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Strings = NDArray[np.object_]

GPU_SERIES_COLUMNS = (
    "power_w",
    "util_gpu_pct",
    "util_mem_pct",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "power_limit_w",
    "enforced_limit_w",
    "temp_c",
    "sm_active_pct",
    "sm_occupancy_pct",
    "dram_active_pct",
    "tensor_active_pct",
    "fp64_active_pct",
    "fp32_active_pct",
    "fp16_active_pct",
    "capped_share",
    "energy_j",
    "power_peak_w",
    "power_sd_w",
)
"""Per GPU and time bucket: means, except ``capped_share`` (share of samples with
clock-event reason 0x4, software power cap, 0..1), ``energy_j`` (sum), ``power_peak_w``
(the highest instantaneous power read in the bucket: the bursts a power limit acts on) and
``power_sd_w`` (the sample standard deviation, n − 1, of the bucket's ``power_w`` samples, W:
how far the power moves about its mean second to second; NaN where a bucket has fewer than
two samples or the store cannot say). The seven ``*_active_pct``/``sm_occupancy_pct``
columns are GPM activity (Hopper and newer; NaN where a GPU does not measure it)."""

HOST_SERIES_COLUMNS = ("inlet_temp_c", "node_power_w", "cpu_util_pct", "cpu_power_w")
ZONE_SERIES_COLUMNS = (
    "supply_temp_c",
    "setpoint_c",
    "return_temp_c",
    "cooling_power_w",
    "it_power_w",
)
JOB_SERIES_COLUMNS = ("power_w", "used_mem_bytes")


@dataclass(frozen=True)
class Scope:
    """Which part of the fleet to read; an empty tuple means all."""

    clusters: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    """Aggregated rows: one per series and time bucket, tags as columns.

    ``tags`` maps a tag name (``host``, ``gpu``, ``model``, ``cluster``,
    ``zone``, ``rack``, ``job``…) to an object array of strings; ``values``
    maps a column of ``*_SERIES_COLUMNS`` to a float array (NaN = missing).
    All arrays have the same length as ``time_ns``.
    """

    time_ns: Ints
    tags: dict[str, Strings] = field(default_factory=dict)
    values: dict[str, Floats] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.time_ns.shape[0])


@dataclass(frozen=True)
class GpuState:
    """The newest sample of one GPU (NaN where the GPU did not report a value)."""

    host: str
    gpu: int
    uuid: str
    model: str
    cluster: str
    zone: str
    rack: str
    time_ns: int
    power_w: float
    temp_c: float
    util_gpu_pct: float
    util_mem_pct: float
    sm_clock_mhz: float
    power_limit_w: float
    enforced_limit_w: float
    min_limit_w: float
    max_limit_w: float
    default_limit_w: float
    slowdown_temp_c: float
    mem_used_bytes: float
    mem_total_bytes: float
    failed: bool
    remapped_rows_pending: float = math.nan
    """1 while a row remapping waits for a GPU reset (XID 63); NaN where not reported."""
    remapped_rows_failed: float = math.nan
    """1 once a row remapping failed (XID 64): the GPU needs replacing."""


@dataclass(frozen=True)
class HostState:
    """The newest ``host`` sample of one node."""

    host: str
    cluster: str
    zone: str
    rack: str
    time_ns: int
    inlet_temp_c: float
    node_power_w: float
    cpu_util_pct: float


@dataclass(frozen=True)
class ZoneState:
    """The newest ``cooling`` sample of one zone."""

    cluster: str
    zone: str
    time_ns: int
    supply_temp_c: float
    setpoint_c: float
    return_temp_c: float
    cooling_power_w: float
    it_power_w: float


class TelemetryStore(Protocol):
    """Reads aggregates and latest states; writes the optimizer's own measurements."""

    def gpu_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        """``gpu`` aggregated per GPU (tags host, gpu, uuid, model, cluster, zone, rack)."""
        ...

    def host_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        """``host`` aggregated per node (tags host, cluster, zone, rack)."""
        ...

    def zone_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        """``cooling`` aggregated per zone (tags cluster, zone)."""
        ...

    def job_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        """``gpu_job`` aggregated per job and GPU (tags host, gpu, job, scheduler, …)."""
        ...

    def xid_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        """``gpu_xid`` events per GPU and XID code (column ``count``, a sum)."""
        ...

    def latest_gpus(self, scope: Scope) -> list[GpuState]: ...

    def latest_hosts(self, scope: Scope) -> list[HostState]: ...

    def latest_zones(self, scope: Scope) -> list[ZoneState]: ...

    def write(self, lines: Sequence[bytes]) -> None:
        """Store line protocol (the ``recommendation`` and ``model`` measurements)."""
        ...

    def close(self) -> None: ...
