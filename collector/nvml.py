"""The NVML source: every GPU of the node, read once per tick.

Reads go through a :class:`NvmlLibrary`: the ``pynvml`` module in production,
:mod:`wattwise.collector.fake_nvml` in tests. NVML errors are converted in one
place, :func:`wattwise.collector.nvml_api.nvml_error`. A value the GPU does not
support is missing (None), never zero. A device-level failure (GPU lost,
unknown error) marks that GPU ``failed=1`` for the tick; the other GPUs are
still read, and the failed one is re-acquired on every later tick until it
answers again.

Energy comes from the energy counter (mJ since driver load) and is differenced
per interval. The counter costs ~3.8 ms per call on an H100 against tens of
microseconds for the whole rest of the sweep, so it is read only every
``energy_every_s`` (staggered across GPUs): energy stays exact because it is a
counter, only its time resolution is coarser. See docs/nvml.md.

For job attribution (:class:`wattwise.collector.jobs.JobSource`) the source
lists each GPU's processes only when asked, at the job source's own low rate,
and hands out the power it already read on the latest tick instead of asking
NVML again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from wattwise.clock import Clock
from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.gpm import GPM_FIELDS, GpmSampler
from wattwise.collector.jobs import GpuProcess
from wattwise.collector.nvml_api import (
    CLOCK_MEM,
    CLOCK_SM,
    FI_ECC_DBE_VOL_TOTAL,
    FI_ECC_SBE_VOL_TOTAL,
    FI_MEMORY_TEMP,
    FI_NVLINK_LINK_COUNT,
    FI_PCIE_COUNT_RX_BYTES,
    FI_PCIE_COUNT_TX_BYTES,
    FI_POWER_INSTANT,
    FI_TOTAL_ENERGY_CONSUMPTION,
    TEMPERATURE_GPU,
    TEMPERATURE_THRESHOLD_SLOWDOWN,
    TICK_FIELD_IDS,
    NvmlLibrary,
    call_nvml,
    field_value,
    load_nvml,
    used_memory_bytes,
)
from wattwise.collector.nvml_health import ViolationRates, XidWatch, count_fields, links_up
from wattwise.errors import DeviceError, SourceUnavailable

log = logging.getLogger(__name__)

# Tick jitter must not push an energy read a whole tick late.
_ENERGY_SLACK_S = 0.05


@dataclass
class CounterDelta:
    """Differences a monotonic counter; a smaller value means it was reset (driver reload).

    On a reset the interval is dropped (None) and the new value becomes the
    baseline: the counter since the reload covers an unknown part of the
    interval, so any number would be wrong by an unknown amount.
    """

    value: float | None = None
    at_s: float | None = None
    resets: int = 0

    def update(self, value: float, now_s: float) -> tuple[float, float] | None:
        """(increase, interval in s) since the previous value, or None for the first/reset."""
        previous, previous_at = self.value, self.at_s
        self.value, self.at_s = value, now_s
        if previous is None or previous_at is None or now_s <= previous_at:
            return None
        if value < previous:
            self.resets += 1
            return None
        return value - previous, now_s - previous_at


@dataclass
class _Gpu:
    index: int
    handle: object | None = None
    uuid: str = ""
    model: str = ""
    static: dict[str, FieldValue | None] = field(default_factory=dict)
    failed: bool = False
    power_w: float | None = None  # read on the latest tick, kept for job attribution
    next_energy_at_s: float = 0.0
    energy: CounterDelta = field(default_factory=CounterDelta)
    pcie_tx: CounterDelta = field(default_factory=CounterDelta)
    pcie_rx: CounterDelta = field(default_factory=CounterDelta)
    violations: ViolationRates = field(default_factory=ViolationRates)
    gpm: GpmSampler | None = None
    xids: XidWatch | None = None

    @property
    def label(self) -> str:
        return f"gpu{self.index}"


def _w(milliwatts: int | float | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def _f(value: int | float | None) -> float | None:
    return None if value is None else float(value)


def _i(value: int | float | None) -> int | None:
    return None if value is None else int(value)


class NvmlSource:
    """Reads every GPU once per tick; see the module docstring for the rules."""

    name = "nvml"

    def __init__(
        self,
        nvml: NvmlLibrary,
        *,
        host: str,
        clock: Clock,
        energy_every_s: float = 10.0,
        energy_read: Literal["call", "field"] = "call",
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """``nvml`` must be initialised; ``energy_read`` picks the counter's API (docs/nvml.md)."""
        self._nvml = nvml
        self._clock = clock
        self._energy_every_s = energy_every_s
        self._energy_by_field = energy_read == "field"
        self._tags = {"host": host, **(labels or {})}
        self.device_errors_total = 0
        count = call_nvml(nvml, "nvml", nvml.nvmlDeviceGetCount)
        self._gpus = [_Gpu(index) for index in range(count or 0)]
        start_s = clock.monotonic()
        for gpu in self._gpus:
            # Spread the 3.8 ms counter reads over the interval instead of one slow tick.
            gpu.next_energy_at_s = start_s + energy_every_s * gpu.index / len(self._gpus)
            self._try_acquire(gpu)

    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def read(self) -> list[Reading]:
        readings: list[Reading] = []
        for gpu in self._gpus:
            # Events first: the XID of a GPU that fell off the bus arrives as it goes.
            readings.extend(self._xid_readings(gpu))
            if gpu.failed and not self._try_acquire(gpu):
                readings.append(self._failed_reading(gpu))
                continue
            try:
                readings.extend(self._read_gpu(gpu))
            except DeviceError as e:
                self._mark_failed(gpu, e)
                readings.append(self._failed_reading(gpu))
        return readings

    def last_power_w(self, gpu_index: int) -> float | None:
        """The power read on the latest tick; None before one, if it failed, or no such GPU."""
        if not 0 <= gpu_index < len(self._gpus):
            return None
        return self._gpus[gpu_index].power_w

    def gpu_processes(self) -> list[GpuProcess]:
        """Processes with a compute or graphics context, per GPU; one entry per GPU and pid.

        A failed GPU, or one whose list fails, contributes none and never raises:
        job attribution must not cost the GPU readings, and read() reports the failure.
        """
        processes: list[GpuProcess] = []
        for gpu in self._gpus:
            handle = gpu.handle
            if gpu.failed or handle is None:
                continue
            try:
                processes.extend(self._processes_of(gpu, handle))
            except DeviceError as e:
                self.device_errors_total += 1
                log.warning("%s (%s): cannot list its processes: %s", gpu.label, gpu.uuid, e)
        return processes

    def close(self) -> None:
        for gpu in self._gpus:
            self._release(gpu)
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as e:
            log.debug("nvmlShutdown failed: %s", e)

    # --- discovery -------------------------------------------------------------

    def _try_acquire(self, gpu: _Gpu) -> bool:
        """(Re-)acquire the handle and static facts; False leaves the GPU failed."""
        try:
            self._acquire(gpu)
        except DeviceError as e:
            self._mark_failed(gpu, e)
            return False
        if gpu.failed:
            log.warning("%s (%s) answers again; reading it", gpu.label, gpu.uuid)
        gpu.failed = False
        return True

    def _acquire(self, gpu: _Gpu) -> None:
        nv, dev = self._nvml, gpu.label
        handle = call_nvml(nv, dev, nv.nvmlDeviceGetHandleByIndex, gpu.index)
        if handle is None:
            raise DeviceError(dev, "no handle for this index")
        uuid = call_nvml(nv, dev, nv.nvmlDeviceGetUUID, handle) or ""
        if uuid != gpu.uuid:  # another board at this index: its counters are new too
            gpu.energy, gpu.pcie_tx, gpu.pcie_rx = CounterDelta(), CounterDelta(), CounterDelta()
            gpu.violations = ViolationRates()
        limits = call_nvml(nv, dev, nv.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        default_mw = call_nvml(nv, dev, nv.nvmlDeviceGetPowerManagementDefaultLimit, handle)
        slowdown = TEMPERATURE_THRESHOLD_SLOWDOWN
        slowdown_c = call_nvml(nv, dev, nv.nvmlDeviceGetTemperatureThreshold, handle, slowdown)
        gpu.static = {
            "min_limit_w": _w(limits[0]) if limits else None,
            "max_limit_w": _w(limits[1]) if limits else None,
            "default_limit_w": _w(default_mw),
            "slowdown_temp_c": _f(slowdown_c),
        }
        gpu.model = call_nvml(nv, dev, nv.nvmlDeviceGetName, handle) or ""
        self._release(gpu)
        gpu.gpm = GpmSampler(nv, dev) if GpmSampler.supported(nv, dev, handle) else None
        gpu.xids = XidWatch(nv, dev, handle)
        gpu.uuid, gpu.handle = uuid, handle

    def _release(self, gpu: _Gpu) -> None:
        """Free what NVML allocated for this GPU (GPM samples, the event set)."""
        if gpu.gpm is not None:
            gpu.gpm.close()
        if gpu.xids is not None:
            gpu.xids.close()
        gpu.gpm = gpu.xids = None

    def _mark_failed(self, gpu: _Gpu, error: DeviceError) -> None:
        self.device_errors_total += 1
        gpu.power_w = None
        if not gpu.failed:  # say it once per outage, not every tick
            log.warning("%s (%s) failed, retrying every tick: %s", gpu.label, gpu.uuid, error)
        gpu.failed = True
        gpu.handle = None

    # --- one tick of one GPU ------------------------------------------------------

    def _read_gpu(self, gpu: _Gpu) -> list[Reading]:
        nv, dev, h = self._nvml, gpu.label, gpu.handle
        now_s, stamp_ns = self._clock.monotonic(), self._clock.time_ns()
        energy_due = now_s >= gpu.next_energy_at_s - _ENERGY_SLACK_S
        fields: dict[str, FieldValue | None] = dict(gpu.static)
        fields.update(self._read_fields(gpu, now_s, energy_due))
        util = call_nvml(nv, dev, nv.nvmlDeviceGetUtilizationRates, h)
        memory = call_nvml(nv, dev, nv.nvmlDeviceGetMemoryInfo, h)
        mig = call_nvml(nv, dev, nv.nvmlDeviceGetMigMode, h)
        power_w = _w(call_nvml(nv, dev, nv.nvmlDeviceGetPowerUsage, h))
        fields |= {
            "power_w": power_w,
            "temp_c": _f(call_nvml(nv, dev, nv.nvmlDeviceGetTemperature, h, TEMPERATURE_GPU)),
            "sm_clock_mhz": _f(call_nvml(nv, dev, nv.nvmlDeviceGetClockInfo, h, CLOCK_SM)),
            "mem_clock_mhz": _f(call_nvml(nv, dev, nv.nvmlDeviceGetClockInfo, h, CLOCK_MEM)),
            "util_gpu_pct": _f(util.gpu) if util else None,
            "util_mem_pct": _f(util.memory) if util else None,
            "mem_used_bytes": _i(memory.used) if memory else None,
            "mem_total_bytes": _i(memory.total) if memory else None,
            "power_limit_w": _w(call_nvml(nv, dev, nv.nvmlDeviceGetPowerManagementLimit, h)),
            "enforced_limit_w": _w(call_nvml(nv, dev, nv.nvmlDeviceGetEnforcedPowerLimit, h)),
            "clock_event_reasons": _i(
                call_nvml(nv, dev, nv.nvmlDeviceGetCurrentClocksEventReasons, h)
            ),
            "mig_mode": _i(mig[0]) if mig else None,
            "failed": 0,
        }
        mig_on = bool(mig and mig[0] == 1)
        fields |= gpu.gpm.read(h, mig_on) if gpu.gpm else dict.fromkeys(GPM_FIELDS)
        if energy_due and not self._energy_by_field:
            counter_mj = call_nvml(nv, dev, nv.nvmlDeviceGetTotalEnergyConsumption, h)
            fields |= self._energy_fields(gpu, counter_mj, now_s)
        if energy_due:
            gpu.next_energy_at_s = now_s + self._energy_every_s
        readings = [Reading("gpu", self._gpu_tags(gpu), fields, stamp_ns)]
        if mig_on:
            readings.extend(self._read_mig(gpu, stamp_ns))
        gpu.power_w = power_w
        return readings

    def _processes_of(self, gpu: _Gpu, handle: object) -> list[GpuProcess]:
        """Compute then graphics processes; a pid with both contexts counts once."""
        nv, dev = self._nvml, gpu.label
        by_pid: dict[int, GpuProcess] = {}
        for list_processes in (
            nv.nvmlDeviceGetComputeRunningProcesses,
            nv.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            for info in call_nvml(nv, dev, list_processes, handle) or []:
                pid, used = int(info.pid), used_memory_bytes(info)
                known = by_pid.get(pid)
                if known is None or known.used_mem_bytes is None:
                    by_pid[pid] = GpuProcess(gpu=gpu.index, pid=pid, used_mem_bytes=used)
        return list(by_pid.values())

    def _read_fields(
        self, gpu: _Gpu, now_s: float, energy_due: bool
    ) -> dict[str, FieldValue | None]:
        """The batched field values: instant power, HBM temperature, ECC, PCIe, health, energy."""
        energy_field = energy_due and self._energy_by_field
        ids = TICK_FIELD_IDS + ((FI_TOTAL_ENERGY_CONSUMPTION,) if energy_field else ())
        nv, dev = self._nvml, gpu.label
        entries = call_nvml(nv, dev, nv.nvmlDeviceGetFieldValues, gpu.handle, list(ids)) or []
        values = {e.fieldId: field_value(e, dev) for e in entries}
        fields: dict[str, FieldValue | None] = {
            "power_instant_w": _w(values.get(FI_POWER_INSTANT)),
            "mem_temp_c": _f(values.get(FI_MEMORY_TEMP)),
            "ecc_corrected_total": _i(values.get(FI_ECC_SBE_VOL_TOTAL)),
            "ecc_uncorrected_total": _i(values.get(FI_ECC_DBE_VOL_TOTAL)),
            "pcie_tx_bytes_per_s": _rate(gpu.pcie_tx, values.get(FI_PCIE_COUNT_TX_BYTES), now_s),
            "pcie_rx_bytes_per_s": _rate(gpu.pcie_rx, values.get(FI_PCIE_COUNT_RX_BYTES), now_s),
            **count_fields(values),
            **gpu.violations.shares_pct(values, now_s),
        }
        if energy_due:  # one call per link: on the energy counter's slower cadence
            links = _i(values.get(FI_NVLINK_LINK_COUNT))
            fields["nvlink_links_up"] = links_up(nv, dev, gpu.handle, links)
        if energy_field:
            counter_mj = values.get(FI_TOTAL_ENERGY_CONSUMPTION)
            fields |= self._energy_fields(gpu, _i(counter_mj), now_s)
        return fields

    def _energy_fields(
        self, gpu: _Gpu, counter_mj: int | None, now_s: float
    ) -> dict[str, FieldValue | None]:
        if counter_mj is None:
            return {}
        resets_before = gpu.energy.resets
        delta = gpu.energy.update(float(counter_mj), now_s)
        if gpu.energy.resets != resets_before:
            log.warning(
                "%s (%s): energy counter went back (driver reloaded); "
                "this interval's energy is dropped",
                gpu.label,
                gpu.uuid,
            )
        if delta is None:
            return {}
        energy_mj, interval_s = delta
        return {"energy_j": energy_mj / 1000.0, "energy_interval_s": interval_s}

    def _read_mig(self, gpu: _Gpu, stamp_ns: int) -> list[Reading]:
        nv, dev, h = self._nvml, gpu.label, gpu.handle
        readings = []
        for slot in range(call_nvml(nv, dev, nv.nvmlDeviceGetMaxMigDeviceCount, h) or 0):
            mig = call_nvml(nv, dev, nv.nvmlDeviceGetMigDeviceHandleByIndex, h, slot)
            if mig is None:  # empty slot
                continue
            gi = call_nvml(nv, dev, nv.nvmlDeviceGetGpuInstanceId, mig)
            memory = call_nvml(nv, dev, nv.nvmlDeviceGetMemoryInfo, mig)
            tags = {
                **self._gpu_tags(gpu),
                "gi": str(gi) if gi is not None else "",
                "mig_uuid": call_nvml(nv, dev, nv.nvmlDeviceGetUUID, mig) or "",
            }
            del tags["model"]
            fields: dict[str, FieldValue | None] = {
                "mem_used_bytes": _i(memory.used) if memory else None,
                "mem_total_bytes": _i(memory.total) if memory else None,
            }
            readings.append(Reading("gpu_mig", tags, fields, stamp_ns))
        return readings

    def _xid_readings(self, gpu: _Gpu) -> list[Reading]:
        """One ``gpu_xid`` reading per XID code that arrived since the previous tick."""
        if gpu.xids is None:
            return []
        codes = gpu.xids.drain()
        stamp_ns = self._clock.time_ns()
        for code in codes:
            log.warning("%s (%s): XID %d", gpu.label, gpu.uuid, code)
        return [
            Reading("gpu_xid", {**self._gpu_tags(gpu), "xid": str(code)}, {"count": n}, stamp_ns)
            for code, n in sorted(codes.items())
        ]

    def _gpu_tags(self, gpu: _Gpu) -> dict[str, str]:
        return {**self._tags, "gpu": str(gpu.index), "uuid": gpu.uuid, "model": gpu.model}

    def _failed_reading(self, gpu: _Gpu) -> Reading:
        return Reading("gpu", self._gpu_tags(gpu), {"failed": 1}, self._clock.time_ns())


def _rate(counter: CounterDelta, value: float | int | None, now_s: float) -> float | None:
    if value is None:
        return None
    delta = counter.update(float(value), now_s)
    return None if delta is None else delta[0] / delta[1]


def open_nvml_source(
    host: str,
    clock: Clock,
    *,
    energy_every_s: float = 10.0,
    energy_read: Literal["call", "field"] = "call",
    labels: Mapping[str, str] | None = None,
    nvml: NvmlLibrary | None = None,
) -> NvmlSource:
    """Load and initialise NVML; SourceUnavailable with one clear message when it is absent.

    ``nvml`` defaults to the ``pynvml`` module; tests pass the fake.
    """
    nvml = load_nvml(nvml, "GPU metrics are off, host metrics continue")
    try:
        source = NvmlSource(
            nvml,
            host=host,
            clock=clock,
            energy_every_s=energy_every_s,
            energy_read=energy_read,
            labels=labels,
        )
    except DeviceError as e:
        raise SourceUnavailable(f"NVML unavailable: cannot count GPUs: {e}") from e
    if source.gpu_count == 0:
        source.close()
        raise SourceUnavailable("NVML found no NVIDIA GPU; GPU metrics are off")
    return source
