"""GPU faults of the simulated fleet: ECC errors, row remapping and XID events, as a real
GPU reports them through NVML.

Off unless asked for: :class:`FaultSpec` rates (seeded, on a random stream of their own,
so turning faults on leaves the fleet's physics and workloads exactly as they were)
or :meth:`GpuFaults.raise_xid` from a test or an evaluation. Each XID has the
consequence the driver's catalog gives it: a double-bit or uncontained ECC error
counts an uncorrected error and schedules a row remapping (which waits for a reset,
XID 63 follows), a remapping that cannot be recorded fails (64), an NVLink error
counts link errors, and a GPU that falls off the bus (79) answers nothing until it
is reset.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from wattwise.collector.sim.dvfs import Ints

RANDOM_XIDS = np.array([13, 31, 43, 48, 63, 74, 79, 94, 95])
"""Codes random faults draw from, application errors the most often."""
RANDOM_WEIGHTS = np.array([30.0, 25.0, 15.0, 5.0, 5.0, 5.0, 3.0, 8.0, 4.0])
NVLINK_LINKS = 18
"""Every simulated GPU has an H100 SXM's NVLink links."""


class FaultSpec(BaseModel):
    """How often simulated GPUs fail, per GPU (all zero: never)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    corrected_ecc_per_gpu_hour: float = Field(0.0, ge=0, description="single-bit ECC errors")
    xids_per_gpu_day: float = Field(0.0, ge=0, description="XID events of any code")


class GpuFaults:
    """Health counters and pending XID events of every GPU, as arrays."""

    def __init__(self, count: int, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self._rng = np.random.default_rng([seed, 0xFA17])  # its own stream: physics unchanged
        self.ecc_corrected: Ints = np.zeros(count, dtype=np.int64)
        self.ecc_uncorrected: Ints = np.zeros(count, dtype=np.int64)
        self.remapped_correctable: Ints = np.zeros(count, dtype=np.int64)
        self.remapped_uncorrectable: Ints = np.zeros(count, dtype=np.int64)
        self.remap_pending = np.zeros(count, dtype=np.bool_)
        self.remap_failed = np.zeros(count, dtype=np.bool_)
        self.ecc_corrected_aggregate: Ints = np.zeros(count, dtype=np.int64)
        self.ecc_uncorrected_aggregate: Ints = np.zeros(count, dtype=np.int64)
        self.nvlink_errors: Ints = np.zeros(count, dtype=np.int64)
        self.nvlink_links_down: Ints = np.zeros(count, dtype=np.int64)
        self.lost = np.zeros(count, dtype=np.bool_)
        self.events: list[list[int]] = [[] for _ in range(count)]

    def step(self, dt_s: float) -> None:
        spec = self.spec
        if spec.corrected_ecc_per_gpu_hour > 0:
            lam = spec.corrected_ecc_per_gpu_hour * dt_s / 3600.0
            errors = self._rng.poisson(lam, len(self.ecc_corrected))
            self.ecc_corrected += errors
            self.ecc_corrected_aggregate += errors
        if spec.xids_per_gpu_day > 0:
            lam = spec.xids_per_gpu_day * dt_s / 86400.0
            for index in np.flatnonzero(self._rng.poisson(lam, len(self.events))).tolist():
                weights = RANDOM_WEIGHTS / RANDOM_WEIGHTS.sum()
                self.raise_xid(index, int(self._rng.choice(RANDOM_XIDS, p=weights)))

    def raise_xid(self, index: int, code: int) -> None:
        """XID ``code`` on GPU ``index``, with its consequence for the GPU's counters."""
        self.events[index].append(code)
        if code in (48, 94, 95):  # uncorrectable ECC: a row is scheduled for remapping
            self.ecc_uncorrected[index] += 1
            self.ecc_uncorrected_aggregate[index] += 1
            if not self.remap_pending[index]:
                self.remap_pending[index] = True
                self.events[index].append(63)
        elif code == 63:
            self.remap_pending[index] = True
        elif code == 64:
            self.remap_failed[index] = True
        elif code == 74:  # a link goes down until the GPU is reset
            self.nvlink_errors[index] += 1
            self.nvlink_links_down[index] = min(self.nvlink_links_down[index] + 1, NVLINK_LINKS)
        elif code == 79:
            self.lost[index] = True

    def reset(self, index: int) -> None:
        """A GPU reset: a pending remapping takes effect, a lost GPU answers again."""
        if self.remap_pending[index]:
            self.remapped_uncorrectable[index] += 1
        self.remap_pending[index] = False
        self.lost[index] = False
        self.nvlink_links_down[index] = 0
        self.ecc_corrected[index] = self.ecc_uncorrected[index] = 0  # volatile counts

    def take_events(self) -> list[tuple[int, list[int]]]:
        """(GPU, codes) that arrived since the previous take."""
        taken = [(i, codes) for i, codes in enumerate(self.events) if codes]
        for i, _ in taken:
            self.events[i] = []
        return taken
