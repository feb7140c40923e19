"""A fake NVML library for tests and demos: the pynvml functions the NVML source calls.

It raises the real ``pynvml.NVMLError`` subclasses and returns the real ctypes
structures (``c_nvmlFieldValue_t``, ``c_nvmlUtilization_t``, ``c_nvmlMemory_t``,
process lists converted from ``c_nvmlProcessInfo_t`` as pynvml converts them),
so the source's conversion code runs exactly as it does against a GPU. Defaults
are one H100 SXM as measured in tests/data/h100/README.md. Every call is
counted per function and GPU index so a test can check the read cadence.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pynvml

from wattwise.collector.gpm import GPM_FIELDS
from wattwise.collector.nvml_api import (
    FI_ECC_DBE_VOL_TOTAL,
    FI_ECC_SBE_VOL_TOTAL,
    FI_MEMORY_TEMP,
    FI_PCIE_COUNT_RX_BYTES,
    FI_PCIE_COUNT_TX_BYTES,
    FI_POWER_INSTANT,
    FI_TOTAL_ENERGY_CONSUMPTION,
)
from wattwise.collector.nvml_health import COUNT_FIELDS, VIOLATION_FIELDS

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_MEM_BYTES = 81_559_379_968


@dataclass
class FakeMig:
    """One MIG device: its GPU instance id, UUID and memory."""

    gi: int
    uuid: str
    mem_used_bytes: int = 0
    mem_total_bytes: int = 10_200_547_328


@dataclass
class FakeProcess:
    """A process with a context on a GPU; ``used_mem_bytes`` None when NVML cannot tell."""

    pid: int
    used_mem_bytes: int | None = 1 << 30


@dataclass
class FakeGpu:
    """One GPU's state; tests change the attributes between ticks.

    ``unsupported`` names pynvml functions (``"nvmlDeviceGetPowerUsage"``) or
    field ids (``FI_MEMORY_TEMP``) that answer NOT_SUPPORTED. ``error`` is an
    NVML error code every call on this GPU raises (``NVML_ERROR_GPU_IS_LOST``
    for a GPU that fell off the bus); set it back to None and the GPU answers.

    GPM metrics (``sm_active_pct`` …) are what the next sample reads; a GPU with
    ``gpm_supported`` False is one before Hopper, and ``gpm_error`` is a code
    every GPM call on it raises. ``health`` holds the health counters by schema
    field name (``remapped_rows_pending``, violation counters in ns), and
    :meth:`xid` raises an XID event.

    ``nvmlDeviceSetPowerManagementLimit`` sets ``power_limit_mw`` and
    ``enforced_limit_mw`` together (no other limiter is modelled); a test stands for
    an operator's ``nvidia-smi -pl`` by changing them itself.
    """

    uuid: str
    name: str = H100_NAME
    power_mw: int = 75_000
    power_instant_mw: int = 74_000
    energy_mj: int = 5_000_000
    temp_c: int = 33
    mem_temp_c: int = 31
    slowdown_temp_c: int = 87
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    util_gpu_pct: int = 0
    util_mem_pct: int = 0
    mem_used_bytes: int = 535_232_512
    mem_total_bytes: int = H100_MEM_BYTES
    power_limit_mw: int = 700_000
    enforced_limit_mw: int = 700_000
    min_limit_mw: int = 200_000
    max_limit_mw: int = 700_000
    default_limit_mw: int = 700_000
    clock_event_reasons: int = 0x1
    mig_mode: int = 0
    migs: list[FakeMig] = field(default_factory=list)
    max_mig_devices: int = 7
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    pcie_tx_bytes: int = 1_000_000
    pcie_rx_bytes: int = 2_000_000
    compute_processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    unsupported: set[str | int] = field(default_factory=set)
    error: int | None = None
    gpm_supported: bool = True
    gpm_error: int | None = None
    sm_active_pct: float = 0.0
    sm_occupancy_pct: float = 0.0
    dram_active_pct: float = 0.0
    tensor_active_pct: float = 0.0
    fp64_active_pct: float = 0.0
    fp32_active_pct: float = 0.0
    fp16_active_pct: float = 0.0
    health: dict[str, int] = field(default_factory=lambda: dict(HEALTHY_H100))
    nvlink_down: set[int] = field(default_factory=set)
    xid_log: list[int] = field(default_factory=list)

    def xid(self, code: int) -> None:
        """The driver reports XID ``code`` on this GPU: an event for every set watching it."""
        self.xid_log.append(code)

    def run(self, seconds: float) -> None:
        """Let the GPU draw its current power for ``seconds``: the energy counter advances."""
        self.energy_mj += round(self.power_mw * seconds)

    def reload_driver(self) -> None:
        """The driver was reloaded: the energy counter starts again near zero."""
        self.energy_mj = 0


HEALTHY_H100: dict[str, int] = {
    **dict.fromkeys(COUNT_FIELDS, 0),
    **dict.fromkeys(VIOLATION_FIELDS, 0),
    "nvlink_links": 18,
}
"""Health counters of an H100 SXM with no errors: 18 NVLink links, every count 0."""


class _FakeSample(ctypes.Structure):
    _fields_ = [("serial", ctypes.c_uint64)]


@dataclass
class _EventSet:
    gpus: set[int] = field(default_factory=set)
    seen: dict[int, int] = field(default_factory=dict)
    freed: bool = False


@dataclass(frozen=True)
class _Handle:
    index: int
    mig_slot: int | None = None


class FakeNvml:
    """Implements :class:`wattwise.collector.nvml_api.NvmlLibrary` over :class:`FakeGpu` s."""

    NVMLError = pynvml.NVMLError
    c_nvmlGpmMetricsGet_t = pynvml.c_nvmlGpmMetricsGet_t

    def __init__(
        self, gpus: Sequence[FakeGpu], *, library_missing: bool = False, root: bool = True
    ) -> None:
        self.gpus = list(gpus)
        self.library_missing = library_missing
        self.root = root
        """Whether the caller may change power limits (False: NO_PERMISSION, as for a user)."""
        self.calls: Counter[tuple[str, int | None]] = Counter()
        self.initialised = False
        self._samples: list[_FakeSample] = []  # kept alive while NVML would hold them
        self._sampled: dict[int, tuple[int, int, dict[int, float]]] = {}
        self.samples_freed = 0
        self.event_sets: list[_EventSet] = []

    @classmethod
    def h100s(cls, count: int) -> FakeNvml:
        return cls(
            [FakeGpu(uuid=f"GPU-00000000-0000-0000-0000-00000000000{i}") for i in range(count)]
        )

    def count(self, function: str, index: int | None = None) -> int:
        """How often ``function`` was called (for GPU ``index``, or in all)."""
        if index is not None:
            return self.calls[(function, index)]
        return sum(n for (name, _), n in self.calls.items() if name == function)

    # --- library ---------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls[("nvmlInit", None)] += 1
        if self.library_missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.calls[("nvmlShutdown", None)] += 1
        self._check_init()
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int, /) -> object:
        self._check_init()
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._gpu("nvmlDeviceGetHandleByIndex", _Handle(index))
        return _Handle(index)

    # --- per device ------------------------------------------------------------

    def nvmlDeviceGetUUID(self, handle: object, /) -> str:
        gpu = self._gpu("nvmlDeviceGetUUID", handle)
        slot = _slot(handle)
        return gpu.uuid if slot is None else self._mig(gpu, slot).uuid

    def nvmlDeviceGetName(self, handle: object, /) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPowerUsage(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetTemperature(self, handle: object, sensor: int, /) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temp_c

    def nvmlDeviceGetTemperatureThreshold(self, handle: object, threshold: int, /) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperatureThreshold", handle)
        if threshold != pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.slowdown_temp_c

    def nvmlDeviceGetClockInfo(self, handle: object, clock: int, /) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        clocks = {pynvml.NVML_CLOCK_SM: gpu.sm_clock_mhz, pynvml.NVML_CLOCK_MEM: gpu.mem_clock_mhz}
        if clock not in clocks:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return clocks[clock]

    def nvmlDeviceGetUtilizationRates(self, handle: object, /) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        if gpu.mig_mode == 1:  # as on a real H100: no device utilization with MIG on
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu_pct, memory=gpu.util_mem_pct)

    def nvmlDeviceGetMemoryInfo(self, handle: object, /) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        slot = _slot(handle)
        used, total = gpu.mem_used_bytes, gpu.mem_total_bytes
        if slot is not None:
            mig = self._mig(gpu, slot)
            used, total = mig.mem_used_bytes, mig.mem_total_bytes
        return pynvml.c_nvmlMemory_t(total=total, free=total - used, used=used)

    def nvmlDeviceGetPowerManagementLimit(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).enforced_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: object, /) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        return [gpu.min_limit_mw, gpu.max_limit_mw]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementDefaultLimit", handle).default_limit_mw

    def nvmlDeviceSetPowerManagementLimit(self, handle: object, limit_mw: int, /) -> None:
        """As the driver does: root only, within the constraints; both getters then show it."""
        gpu = self._gpu("nvmlDeviceSetPowerManagementLimit", handle)
        if _slot(handle) is not None:  # a MIG device has no power limit of its own
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not self.root:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        if not gpu.min_limit_mw <= limit_mw <= gpu.max_limit_mw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu.power_limit_mw = gpu.enforced_limit_mw = int(limit_mw)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).clock_event_reasons

    def nvmlDeviceGetMigMode(self, handle: object, /) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetMigMode", handle)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: object, /) -> int:
        return self._gpu("nvmlDeviceGetMaxMigDeviceCount", handle).max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: object, index: int, /) -> object:
        gpu = self._gpu("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if gpu.mig_mode != 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._mig(gpu, index)
        return _Handle(_index(handle), mig_slot=index)

    def nvmlDeviceGetGpuInstanceId(self, handle: object, /) -> int:
        gpu = self._gpu("nvmlDeviceGetGpuInstanceId", handle)
        slot = _slot(handle)
        if slot is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._mig(gpu, slot).gi

    def nvmlDeviceGetFieldValues(self, handle: object, field_ids: Sequence[int], /) -> Any:
        gpu = self._gpu("nvmlDeviceGetFieldValues", handle)
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for entry, field_id in zip(values, field_ids, strict=True):
            entry.fieldId = field_id
            _fill(entry, gpu, field_id)
        return values

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object, /) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        return [_process_info(p) for p in gpu.compute_processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object, /) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [_process_info(p) for p in gpu.graphics_processes]

    def nvmlDeviceGetNvLinkState(self, handle: object, link: int, /) -> int:
        gpu = self._gpu("nvmlDeviceGetNvLinkState", handle)
        if not 0 <= link < gpu.health.get("nvlink_links", 0):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        down = link in gpu.nvlink_down
        return int(pynvml.NVML_FEATURE_DISABLED if down else pynvml.NVML_FEATURE_ENABLED)

    # --- events ------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> object:
        self._check_init()
        self.event_sets.append(_EventSet())
        return self.event_sets[-1]

    def nvmlEventSetFree(self, event_set: object, /) -> None:
        self._event_set(event_set).freed = True

    def nvmlDeviceRegisterEvents(self, handle: object, types: int, event_set: object, /) -> None:
        gpu = self._gpu("nvmlDeviceRegisterEvents", handle)
        if types & ~pynvml.nvmlEventTypeAll:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        watched = self._event_set(event_set)
        index = _index(handle)
        watched.gpus.add(index)
        watched.seen[index] = len(gpu.xid_log)  # events from now on, as the driver does

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int, /) -> Any:
        watched = self._event_set(event_set)
        for index in sorted(watched.gpus):
            log = self.gpus[index].xid_log
            seen = watched.seen[index]
            if seen < len(log):
                watched.seen[index] = seen + 1
                return pynvml.c_nvmlEventData_t(
                    eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=log[seen]
                )
        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)

    # --- GPU performance monitoring ------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, handle: object, /) -> Any:
        gpu = self._gpu("nvmlGpmQueryDeviceSupport", handle)
        return pynvml.c_nvmlGpmSupport_t(
            version=pynvml.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(gpu.gpm_supported)
        )

    def nvmlGpmSampleAlloc(self) -> object:
        self._check_init()
        sample = _FakeSample(serial=len(self._samples))
        self._samples.append(sample)
        return ctypes.cast(ctypes.pointer(sample), pynvml.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, sample: object, /) -> None:
        self._check_init()
        self._sampled.pop(_serial(sample), None)
        self.samples_freed += 1

    def nvmlGpmSampleGet(self, handle: object, sample: object, /) -> object:
        gpu = self._gpm_gpu("nvmlGpmSampleGet", handle)
        values = {metric: getattr(gpu, name) for name, metric in GPM_FIELDS.items()}
        taken = sum(n for (name, _), n in self.calls.items() if name == "nvmlGpmSampleGet")
        self._sampled[_serial(sample)] = (_index(handle), taken, values)
        return sample

    def nvmlGpmMetricsGet(self, request: Any, /) -> Any:
        self._check_init()
        if request.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first = self._sampled.get(_serial(request.sample1))
        second = self._sampled.get(_serial(request.sample2))
        if first is None or second is None or first[0] != second[0] or second[1] <= first[1]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._gpm_gpu("nvmlGpmMetricsGet", _Handle(second[0]))
        for metric in request.metrics[: request.numMetrics]:
            value = second[2].get(metric.metricId)
            metric.nvmlReturn = (
                pynvml.NVML_SUCCESS if value is not None else (pynvml.NVML_ERROR_NOT_SUPPORTED)
            )
            metric.value = value if value is not None else 0.0
        return request

    # --- internals ---------------------------------------------------------------

    def _gpm_gpu(self, function: str, handle: object) -> FakeGpu:
        gpu = self._gpu(function, handle)
        if gpu.gpm_error is not None:
            raise pynvml.NVMLError(gpu.gpm_error)
        if not gpu.gpm_supported or gpu.mig_mode == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _event_set(self, event_set: object) -> _EventSet:
        self._check_init()
        if not isinstance(event_set, _EventSet) or event_set.freed:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return event_set

    def _check_init(self) -> None:
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, function: str, handle: object) -> FakeGpu:
        self._check_init()
        index = _index(handle)
        self.calls[(function, index)] += 1
        gpu = self.gpus[index]
        if gpu.error is not None:
            raise pynvml.NVMLError(gpu.error)
        if function in gpu.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _mig(self, gpu: FakeGpu, slot: int) -> FakeMig:
        if not 0 <= slot < gpu.max_mig_devices:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if slot >= len(gpu.migs):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return gpu.migs[slot]


def _index(handle: object) -> int:
    if not isinstance(handle, _Handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return handle.index


def _serial(sample: Any) -> int:
    if not sample:  # a NULL sample pointer
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    return int(ctypes.cast(sample, ctypes.POINTER(_FakeSample)).contents.serial)


def _slot(handle: object) -> int | None:
    return handle.mig_slot if isinstance(handle, _Handle) else None


def _process_info(process: FakeProcess) -> Any:
    """What pynvml returns per process: the driver's struct made a friendly object."""
    unavailable = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
    used = unavailable if process.used_mem_bytes is None else process.used_mem_bytes
    no_instance = pynvml.NVML_VALUE_NOT_AVAILABLE_uint.value  # not a MIG instance
    struct = pynvml.c_nvmlProcessInfo_t(
        pid=process.pid,
        usedGpuMemory=used,
        gpuInstanceId=no_instance,
        computeInstanceId=no_instance,
    )
    info = pynvml.nvmlStructToFriendlyObject(struct)
    if info.usedGpuMemory == unavailable:  # as pynvml does: "not available" becomes None
        info.usedGpuMemory = None
    return info


# field id -> (FakeGpu attribute, pynvml value type, member of the value union)
_FIELDS: dict[int, tuple[str, int, str]] = {
    FI_POWER_INSTANT: ("power_instant_mw", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal"),
    FI_MEMORY_TEMP: ("mem_temp_c", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal"),
    FI_ECC_SBE_VOL_TOTAL: ("ecc_corrected", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal"),
    FI_ECC_DBE_VOL_TOTAL: ("ecc_uncorrected", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal"),
    FI_PCIE_COUNT_TX_BYTES: ("pcie_tx_bytes", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal"),
    FI_PCIE_COUNT_RX_BYTES: ("pcie_rx_bytes", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal"),
    FI_TOTAL_ENERGY_CONSUMPTION: (
        "energy_mj",
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
        "ullVal",
    ),
}


_HEALTH_FIELDS = {fid: name for name, fid in {**COUNT_FIELDS, **VIOLATION_FIELDS}.items()}


def _fill(entry: Any, gpu: FakeGpu, field_id: int) -> None:
    """Fill one c_nvmlFieldValue_t as the driver would, per-field status included."""
    known = _FIELDS.get(field_id)
    health = _HEALTH_FIELDS.get(field_id)
    if (known is None and health is None) or field_id in gpu.unsupported:
        entry.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return
    entry.nvmlReturn = pynvml.NVML_SUCCESS
    if health is not None:
        entry.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
        entry.value.ullVal = gpu.health[health]
        return
    assert known is not None
    attribute, value_type, member = known
    entry.valueType = value_type
    setattr(entry.value, member, getattr(gpu, attribute))
