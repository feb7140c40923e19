"""GPU Performance Monitoring (Hopper and newer): SM, DRAM and pipe activity per tick.

NVML computes GPM metrics between two samples of a GPU's counters
(``nvmlGpmSampleGet``), so each GPU keeps two sample buffers and, every tick,
samples into the one not holding the previous tick's sample and asks
``nvmlGpmMetricsGet`` for the metrics between the two: each value covers
exactly the time since the previous tick. The first tick of a GPU, and the
first after MIG was turned off or a GPM call failed, has no interval yet.

A GPU without GPM (``nvmlGpmQueryDeviceSupport`` says no: anything before
Hopper), a GPU in MIG mode (GPM then samples per instance, not per device) and
any failed GPM call leave these fields missing for that GPU and tick, never 0;
a GPM failure never fails the GPU or touches its other fields.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TypeVar

from wattwise.collector.nvml_api import (
    GPM_METRIC_ANY_TENSOR_UTIL,
    GPM_METRIC_DRAM_BW_UTIL,
    GPM_METRIC_FP16_UTIL,
    GPM_METRIC_FP32_UTIL,
    GPM_METRIC_FP64_UTIL,
    GPM_METRIC_SM_OCCUPANCY,
    GPM_METRIC_SM_UTIL,
    GPM_METRICS_GET_VERSION,
    SUCCESS,
    NvmlLibrary,
    call_nvml,
)
from wattwise.errors import DeviceError

log = logging.getLogger(__name__)
T = TypeVar("T")

GPM_FIELDS = {
    "sm_active_pct": GPM_METRIC_SM_UTIL,
    "sm_occupancy_pct": GPM_METRIC_SM_OCCUPANCY,
    "dram_active_pct": GPM_METRIC_DRAM_BW_UTIL,
    "tensor_active_pct": GPM_METRIC_ANY_TENSOR_UTIL,
    "fp64_active_pct": GPM_METRIC_FP64_UTIL,
    "fp32_active_pct": GPM_METRIC_FP32_UTIL,
    "fp16_active_pct": GPM_METRIC_FP16_UTIL,
}
"""Schema field → NVML GPM metric; dcgm-exporter's DCGM_FI_PROF_SM_ACTIVE, …_SM_OCCUPANCY,
…_DRAM_ACTIVE, …_PIPE_TENSOR_ACTIVE, …_PIPE_FP64/FP32/FP16_ACTIVE (as fractions there)."""

_ROUNDING_PCT = 1e-6
"""NVML's percentages are computed in floating point and may pass 100 by a hair."""


class GpmSampler:
    """The two GPM sample buffers of one GPU, used in turn tick by tick."""

    def __init__(self, nvml: NvmlLibrary, device: str) -> None:
        self._nvml = nvml
        self._device = device
        self._buffers: list[object] = []
        self._previous: int | None = None  # which buffer holds the previous tick's sample
        self._failing = False

    @staticmethod
    def supported(nvml: NvmlLibrary, device: str, handle: object) -> bool:
        """Whether the GPU has GPM at all (False too when the question itself fails)."""
        try:
            support = call_nvml(nvml, device, nvml.nvmlGpmQueryDeviceSupport, handle)
        except DeviceError:
            return False
        return support is not None and bool(support.isSupportedDevice)

    def read(self, handle: object, mig_on: bool) -> dict[str, float | None]:
        """The GPM fields over the interval since the previous call (None where unknown)."""
        if mig_on:
            self._previous = None
            return dict.fromkeys(GPM_FIELDS)
        try:
            values = self._read(handle)
        except DeviceError as e:
            self._previous = None
            if not self._failing:  # once per spell of failures, not every tick
                log.warning(
                    "%s: GPM metrics unavailable, other fields unaffected: %s", self._device, e
                )
            self._failing = True
            return dict.fromkeys(GPM_FIELDS)
        self._failing = False
        return values

    def close(self) -> None:
        for buffer in self._buffers:
            try:
                self._nvml.nvmlGpmSampleFree(buffer)
            except self._nvml.NVMLError as e:
                log.debug("%s: nvmlGpmSampleFree failed: %s", self._device, e)
        self._buffers, self._previous = [], None

    def _read(self, handle: object) -> dict[str, float | None]:
        if not self._buffers:
            self._buffers = [self._call(self._nvml.nvmlGpmSampleAlloc) for _ in range(2)]
        current = 0 if self._previous != 0 else 1
        self._call(self._nvml.nvmlGpmSampleGet, handle, self._buffers[current])
        previous, self._previous = self._previous, current
        if previous is None:
            return dict.fromkeys(GPM_FIELDS)
        request = self._nvml.c_nvmlGpmMetricsGet_t()
        request.version = GPM_METRICS_GET_VERSION
        request.numMetrics = len(GPM_FIELDS)
        request.sample1, request.sample2 = self._buffers[previous], self._buffers[current]
        for slot, metric_id in enumerate(GPM_FIELDS.values()):
            request.metrics[slot].metricId = metric_id
        answer = self._call(self._nvml.nvmlGpmMetricsGet, request)
        by_id = {
            m.metricId: _percent(m.value) if m.nvmlReturn == SUCCESS else None
            for m in answer.metrics[: len(GPM_FIELDS)]
        }
        return {name: by_id.get(metric_id) for name, metric_id in GPM_FIELDS.items()}

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        """One GPM call; an unsupported answer is a failure here (no values this tick)."""
        result = call_nvml(self._nvml, self._device, fn, *args)
        if result is None:
            raise DeviceError(self._device, f"{getattr(fn, '__name__', 'GPM call')} not supported")
        return result


def _percent(value: float) -> float | None:
    if not math.isfinite(value) or not -_ROUNDING_PCT <= value <= 100.0 + _ROUNDING_PCT:
        return None
    return min(max(float(value), 0.0), 100.0)
