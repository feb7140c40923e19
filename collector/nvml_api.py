"""The NVML boundary: the pynvml functions wattwise calls, and the one error conversion.

:class:`NvmlLibrary` lists exactly the ``pynvml`` functions the NVML source
uses, so mypy checks the fake (:mod:`wattwise.collector.fake_nvml`) against
them. :func:`nvml_error` is the only place an NVML return code becomes a
wattwise error: unsupported or not permitted means the value is missing,
``NVML_ERROR_GPU_IS_LOST`` is :class:`DeviceLost`, anything else
:class:`DeviceError` for that GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from wattwise.errors import DeviceError, DeviceLost, SourceUnavailable

T = TypeVar("T")

# NVML's ABI numbers (nvml.h). Copied so this module imports without pynvml;
# a test checks them against pynvml.
SUCCESS = 0
ERROR_NOT_SUPPORTED = 3
ERROR_INVALID_ARGUMENT = 2
ERROR_NO_PERMISSION = 4
ERROR_NOT_FOUND = 6
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_GPU_IS_LOST = 15
TEMPERATURE_GPU = 0
TEMPERATURE_THRESHOLD_SLOWDOWN = 1
CLOCK_SM = 1
CLOCK_MEM = 2
FI_ECC_SBE_VOL_TOTAL = 3
FI_ECC_DBE_VOL_TOTAL = 4
FI_MEMORY_TEMP = 82
FI_TOTAL_ENERGY_CONSUMPTION = 83
FI_POWER_INSTANT = 186
FI_PCIE_COUNT_TX_BYTES = 197
FI_PCIE_COUNT_RX_BYTES = 198
FI_ECC_SBE_AGG_TOTAL = 5
FI_ECC_DBE_AGG_TOTAL = 6
FI_RETIRED_SBE = 29
FI_RETIRED_DBE = 30
FI_RETIRED_PENDING = 31
FI_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL = 38
FI_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL = 45
FI_NVLINK_REPLAY_ERROR_COUNT_TOTAL = 52
FI_NVLINK_RECOVERY_ERROR_COUNT_TOTAL = 59
FI_PERF_POLICY_POWER = 74
FI_PERF_POLICY_THERMAL = 75
FI_PERF_POLICY_BOARD_LIMIT = 77
FI_NVLINK_LINK_COUNT = 91
FI_PCIE_REPLAY_COUNTER = 94
FI_REMAPPED_COR = 142
FI_REMAPPED_UNC = 143
FI_REMAPPED_PENDING = 144
FI_REMAPPED_FAILURE = 145
ERROR_TIMEOUT = 10
FEATURE_ENABLED = 1
EVENT_TYPE_XID_CRITICAL_ERROR = 0x8
GPM_METRICS_GET_VERSION = 1
GPM_METRIC_SM_UTIL = 2
GPM_METRIC_SM_OCCUPANCY = 3
GPM_METRIC_ANY_TENSOR_UTIL = 5
GPM_METRIC_DRAM_BW_UTIL = 10
GPM_METRIC_FP64_UTIL = 11
GPM_METRIC_FP32_UTIL = 12
GPM_METRIC_FP16_UTIL = 13
# NVML_VALUE_NOT_AVAILABLE as an unsigned long long: "NVML cannot tell" (WDDM, MIG unprivileged).
VALUE_NOT_AVAILABLE_ULL = 2**64 - 1

# The value is absent on this GPU or to this user: the field is missing, the GPU is fine.
_MISSING_CODES = frozenset(
    {ERROR_NOT_SUPPORTED, ERROR_NO_PERMISSION, ERROR_NOT_FOUND, ERROR_FUNCTION_NOT_FOUND}
)
# Field values read in one nvmlDeviceGetFieldValues call per GPU and tick.
TICK_FIELD_IDS = (
    FI_POWER_INSTANT,
    FI_MEMORY_TEMP,
    FI_ECC_SBE_VOL_TOTAL,
    FI_ECC_DBE_VOL_TOTAL,
    FI_PCIE_COUNT_TX_BYTES,
    FI_PCIE_COUNT_RX_BYTES,
    FI_ECC_SBE_AGG_TOTAL,
    FI_ECC_DBE_AGG_TOTAL,
    FI_RETIRED_SBE,
    FI_RETIRED_DBE,
    FI_RETIRED_PENDING,
    FI_REMAPPED_COR,
    FI_REMAPPED_UNC,
    FI_REMAPPED_PENDING,
    FI_REMAPPED_FAILURE,
    FI_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    FI_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    FI_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    FI_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    FI_NVLINK_LINK_COUNT,
    FI_PCIE_REPLAY_COUNTER,
    FI_PERF_POLICY_POWER,
    FI_PERF_POLICY_THERMAL,
    FI_PERF_POLICY_BOARD_LIMIT,
)


class ValueUnion(Protocol):
    """``nvmlValue_t``: which member is valid depends on the field's value type."""

    @property
    def dVal(self) -> float: ...
    @property
    def uiVal(self) -> int: ...
    @property
    def ulVal(self) -> int: ...
    @property
    def ullVal(self) -> int: ...
    @property
    def sllVal(self) -> int: ...
    @property
    def siVal(self) -> int: ...
    @property
    def usVal(self) -> int: ...


class FieldValueStruct(Protocol):
    """``nvmlFieldValue_t`` as pynvml returns it."""

    @property
    def fieldId(self) -> int: ...
    @property
    def nvmlReturn(self) -> int: ...
    @property
    def valueType(self) -> int: ...
    @property
    def value(self) -> ValueUnion: ...


class Utilization(Protocol):
    @property
    def gpu(self) -> int: ...
    @property
    def memory(self) -> int: ...


class MemoryInfo(Protocol):
    @property
    def used(self) -> int: ...
    @property
    def total(self) -> int: ...


class ProcessInfo(Protocol):
    """``nvmlProcessInfo_t`` as pynvml returns it: memory None (or the raw sentinel) if unknown."""

    @property
    def pid(self) -> int: ...
    @property
    def usedGpuMemory(self) -> int | None: ...


class GpmSupport(Protocol):
    """``nvmlGpmSupport_t``: whether the device has GPU Performance Monitoring."""

    @property
    def isSupportedDevice(self) -> int: ...


class GpmMetric(Protocol):
    """``nvmlGpmMetric_t``: one metric of a ``nvmlGpmMetricsGet`` request, with its status."""

    metricId: int

    @property
    def nvmlReturn(self) -> int: ...
    @property
    def value(self) -> float: ...


class GpmMetricsGet(Protocol):
    """``nvmlGpmMetricsGet_t``: the metrics asked for between two samples."""

    version: int
    numMetrics: int
    sample1: object
    sample2: object

    @property
    def metrics(self) -> Sequence[GpmMetric]: ...


class EventData(Protocol):
    """``nvmlEventData_t``: for an XID event, ``eventData`` is the XID code."""

    @property
    def eventType(self) -> int: ...
    @property
    def eventData(self) -> int: ...


class NvmlLibrary(Protocol):
    """Exactly the part of ``pynvml`` this source calls."""

    @property
    def NVMLError(self) -> type[Exception]: ...
    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int, /) -> object: ...
    def nvmlDeviceGetUUID(self, handle: object, /) -> str: ...
    def nvmlDeviceGetName(self, handle: object, /) -> str: ...
    def nvmlDeviceGetPowerUsage(self, handle: object, /) -> int: ...
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object, /) -> int: ...
    def nvmlDeviceGetTemperature(self, handle: object, sensor: int, /) -> int: ...
    def nvmlDeviceGetTemperatureThreshold(self, handle: object, threshold: int, /) -> int: ...
    def nvmlDeviceGetClockInfo(self, handle: object, clock: int, /) -> int: ...
    def nvmlDeviceGetUtilizationRates(self, handle: object, /) -> Utilization: ...
    def nvmlDeviceGetMemoryInfo(self, handle: object, /) -> MemoryInfo: ...
    def nvmlDeviceGetPowerManagementLimit(self, handle: object, /) -> int: ...
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: object, /) -> int: ...
    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: object, /) -> list[int]: ...
    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: object, /) -> int: ...
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: object, /) -> int: ...
    def nvmlDeviceGetMigMode(self, handle: object, /) -> list[int]: ...
    def nvmlDeviceGetMaxMigDeviceCount(self, handle: object, /) -> int: ...
    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: object, index: int, /) -> object: ...
    def nvmlDeviceGetGpuInstanceId(self, handle: object, /) -> int: ...
    def nvmlDeviceGetFieldValues(
        self, handle: object, field_ids: Sequence[int], /
    ) -> Sequence[FieldValueStruct]: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: object, /) -> Sequence[ProcessInfo]: ...
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object, /) -> Sequence[ProcessInfo]: ...
    def nvmlDeviceGetNvLinkState(self, handle: object, link: int, /) -> int: ...
    def nvmlEventSetCreate(self) -> object: ...
    def nvmlEventSetFree(self, event_set: object, /) -> None: ...
    def nvmlDeviceRegisterEvents(
        self, handle: object, types: int, event_set: object, /
    ) -> None: ...
    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int, /) -> EventData: ...
    def nvmlGpmQueryDeviceSupport(self, handle: object, /) -> GpmSupport: ...
    def nvmlGpmSampleAlloc(self) -> object: ...
    def nvmlGpmSampleFree(self, sample: object, /) -> None: ...
    def nvmlGpmSampleGet(self, handle: object, sample: object, /) -> object: ...
    def nvmlGpmMetricsGet(self, request: GpmMetricsGet, /) -> GpmMetricsGet: ...
    @property
    def c_nvmlGpmMetricsGet_t(self) -> Callable[[], GpmMetricsGet]:
        """The request structure's type (pynvml's ctypes struct)."""
        ...


class NvmlInit(Protocol):
    """The part of ``pynvml`` every user of it starts with."""

    @property
    def NVMLError(self) -> type[Exception]: ...
    def nvmlInit(self) -> None: ...


L = TypeVar("L", bound=NvmlInit)


def load_nvml(nvml: L | None, consequence: str = "") -> L:
    """``nvml`` (default: the ``pynvml`` module) initialised; one clear SourceUnavailable
    when the module, the library or the driver is missing (``consequence`` is appended:
    what stops without it)."""
    tail = f"; {consequence}" if consequence else ""
    if nvml is None:
        try:
            import pynvml
        except ImportError as e:
            raise SourceUnavailable(
                "NVML unavailable: the Python module 'pynvml' (package nvidia-ml-py) is not "
                f"installed{tail}"
            ) from e
        nvml = pynvml
    assert nvml is not None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        code = int(getattr(e, "value", -1))
        reason = {
            ERROR_LIBRARY_NOT_FOUND: "libnvidia-ml.so.1 was not found (no NVIDIA driver here)",
            ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded",
        }.get(code, f"nvmlInit failed: {e} (NVML error {code})")
        raise SourceUnavailable(f"NVML unavailable: {reason}{tail}") from e
    return nvml


def nvml_error(code: int, device: str, detail: str = "") -> DeviceError | None:
    """The one conversion of an NVML return code: None when the value is just missing."""
    if code in _MISSING_CODES:
        return None
    what = detail or f"NVML error {code}"
    if code == ERROR_GPU_IS_LOST:
        return DeviceLost(device, f"GPU is lost ({what})")
    return DeviceError(device, f"{what} (NVML error {code})")


def call_nvml(nvml: NvmlLibrary, device: str, fn: Callable[..., T], *args: object) -> T | None:
    """Call one NVML function; None if unsupported, DeviceError/DeviceLost on device failure."""
    try:
        return fn(*args)
    except nvml.NVMLError as e:
        error = nvml_error(int(getattr(e, "value", -1)), device, str(e))
        if error is None:
            return None
        raise error from e


def field_value(entry: FieldValueStruct, device: str) -> float | int | None:
    """Decode one field value; a per-field failure is missing, a lost GPU raises."""
    if entry.nvmlReturn != SUCCESS:
        error = nvml_error(entry.nvmlReturn, device)
        if isinstance(error, DeviceLost):
            raise error
        return None
    value = entry.value
    decoders: dict[int, Callable[[], float | int]] = {
        0: lambda: value.dVal,
        1: lambda: value.uiVal,
        2: lambda: value.ulVal,
        3: lambda: value.ullVal,
        4: lambda: value.sllVal,
        5: lambda: value.siVal,
        6: lambda: value.usVal,
    }
    decode = decoders.get(entry.valueType)
    return decode() if decode is not None else None


def used_memory_bytes(info: ProcessInfo) -> int | None:
    """A process's GPU memory; None where NVML cannot tell, never the sentinel as bytes."""
    used = info.usedGpuMemory
    # pynvml turns the sentinel into None itself; the check guards against any that does not.
    return None if used is None or used == VALUE_NOT_AVAILABLE_ULL else int(used)
