"""GPU power limits as the power-plan applier reads and sets them.

:class:`PowerLimits` is the whole interface the applier needs; :class:`NvmlPowerLimits`
implements it over NVML (``pynvml`` on a node, :mod:`wattwise.collector.fake_nvml` in
tests). A limit is set with ``nvmlDeviceSetPowerManagementLimit`` (milliwatts, root
only) and read back from ``nvmlDeviceGetEnforcedPowerLimit``, the limit the GPU
actually enforces. NVML errors become :class:`PowerLimitError` in one place,
:func:`limit_error`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

from wattwise.collector.nvml_api import (
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_INVALID_ARGUMENT,
    ERROR_NO_PERMISSION,
    ERROR_NOT_SUPPORTED,
    NvmlInit,
    load_nvml,
)
from wattwise.errors import PowerLimitError

T = TypeVar("T")


class GpuLimits(NamedTuple):
    """One GPU's power-limit range, its default limit and the limit it enforces now, in W."""

    min_w: float
    max_w: float
    default_w: float
    enforced_w: float


class PowerLimits(Protocol):
    """Where the applier reads and changes the GPUs' power limits."""

    def gpus(self) -> list[int]:
        """The indices of this node's GPUs."""
        ...

    def limits(self, gpu: int) -> GpuLimits:
        """GPU ``gpu``'s limits now; :class:`PowerLimitError` if they cannot be read."""
        ...

    def set_limit(self, gpu: int, watts: float) -> float:
        """Set GPU ``gpu``'s power limit; return the enforced limit read back (W)."""
        ...


class NvmlLimitsLibrary(NvmlInit, Protocol):
    """The part of ``pynvml`` :class:`NvmlPowerLimits` calls."""

    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int, /) -> object: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object, /) -> int: ...
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: object, /) -> list[int]: ...
    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: object, /) -> int: ...
    def nvmlDeviceSetPowerManagementLimit(self, handle: object, limit_mw: int, /) -> None: ...


_REASONS = {
    ERROR_NO_PERMISSION: "changing a power limit needs root (NVML: no permission)",
    ERROR_INVALID_ARGUMENT: "NVML refused the value (outside the GPU's power-limit range?)",
    ERROR_NOT_SUPPORTED: "this GPU's power limit cannot be read or changed (NVML: not supported)",
    ERROR_FUNCTION_NOT_FOUND: "the driver's NVML lacks this power-limit call",
    ERROR_GPU_IS_LOST: "the GPU fell off the bus (NVML: GPU is lost)",
}


def limit_error(code: int, gpu: int | None, detail: str = "") -> PowerLimitError:
    """The one conversion of an NVML return code met while reading or setting a limit."""
    reason = _REASONS.get(code, f"NVML error {code}: {detail}" if detail else f"NVML error {code}")
    return PowerLimitError(gpu, reason, code)


class NvmlPowerLimits:
    """:class:`PowerLimits` over an initialised NVML library."""

    def __init__(self, nvml: NvmlLimitsLibrary) -> None:
        self._nvml = nvml

    def gpus(self) -> list[int]:
        return list(range(self._call(None, self._nvml.nvmlDeviceGetCount)))

    def limits(self, gpu: int) -> GpuLimits:
        handle = self._handle(gpu)
        low, high = self._call(gpu, self._nvml.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        default = self._call(gpu, self._nvml.nvmlDeviceGetPowerManagementDefaultLimit, handle)
        enforced = self._call(gpu, self._nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        return GpuLimits(low / 1000, high / 1000, default / 1000, enforced / 1000)

    def set_limit(self, gpu: int, watts: float) -> float:
        handle = self._handle(gpu)
        # Whole milliwatts, never above what was asked.
        self._call(gpu, self._nvml.nvmlDeviceSetPowerManagementLimit, handle, milliwatts(watts))
        return self._call(gpu, self._nvml.nvmlDeviceGetEnforcedPowerLimit, handle) / 1000

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def _handle(self, gpu: int) -> object:
        return self._call(gpu, self._nvml.nvmlDeviceGetHandleByIndex, gpu)

    def _call(self, gpu: int | None, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except self._nvml.NVMLError as e:
            raise limit_error(int(getattr(e, "value", -1)), gpu, str(e)) from e


def milliwatts(watts: float) -> int:
    """``watts`` in whole milliwatts, rounded down (a limit never above the one asked for)."""
    return math.floor(round(watts * 1000, 6))


def open_nvml_limits(nvml: NvmlLimitsLibrary | None = None) -> NvmlPowerLimits:
    """Load and initialise NVML; SourceUnavailable with one clear message when it is absent."""
    nvml = load_nvml(nvml)
    return NvmlPowerLimits(nvml)


def describe(limits: GpuLimits) -> str:
    """``enforced 700 W (default 700 W, range 200–700 W)`` for log lines."""
    return (
        f"enforced {limits.enforced_w:g} W (default {limits.default_w:g} W, range "
        f"{limits.min_w:g}–{limits.max_w:g} W)"
    )
