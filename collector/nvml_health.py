"""GPU health from NVML, read-only: ECC, retired pages, remapped rows, NVLink, PCIe replays,
throttle violations, and XID events.

The counts ride in the tick's one ``nvmlDeviceGetFieldValues`` call
(:data:`~wattwise.collector.nvml_api.TICK_FIELD_IDS`); violation counters (ns
the clocks were held by a policy) are differenced into a share of the interval.
NVLink link states take one call per link, so they are read on the energy
counter's slower cadence. XIDs arrive as NVML events: each GPU has an event set
registered for ``XidCriticalError``, drained without waiting on every tick.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from wattwise.collector.base import FieldValue
from wattwise.collector.nvml_api import (
    ERROR_TIMEOUT,
    EVENT_TYPE_XID_CRITICAL_ERROR,
    FEATURE_ENABLED,
    FI_ECC_DBE_AGG_TOTAL,
    FI_ECC_SBE_AGG_TOTAL,
    FI_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    FI_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    FI_NVLINK_LINK_COUNT,
    FI_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    FI_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    FI_PCIE_REPLAY_COUNTER,
    FI_PERF_POLICY_BOARD_LIMIT,
    FI_PERF_POLICY_POWER,
    FI_PERF_POLICY_THERMAL,
    FI_REMAPPED_COR,
    FI_REMAPPED_FAILURE,
    FI_REMAPPED_PENDING,
    FI_REMAPPED_UNC,
    FI_RETIRED_DBE,
    FI_RETIRED_PENDING,
    FI_RETIRED_SBE,
    NvmlLibrary,
    call_nvml,
)
from wattwise.errors import DeviceError

log = logging.getLogger(__name__)

COUNT_FIELDS = {
    "ecc_corrected_aggregate_total": FI_ECC_SBE_AGG_TOTAL,
    "ecc_uncorrected_aggregate_total": FI_ECC_DBE_AGG_TOTAL,
    "retired_pages_sbe": FI_RETIRED_SBE,
    "retired_pages_dbe": FI_RETIRED_DBE,
    "retired_pages_pending": FI_RETIRED_PENDING,
    "remapped_rows_correctable": FI_REMAPPED_COR,
    "remapped_rows_uncorrectable": FI_REMAPPED_UNC,
    "remapped_rows_pending": FI_REMAPPED_PENDING,
    "remapped_rows_failed": FI_REMAPPED_FAILURE,
    "nvlink_crc_flit_errors_total": FI_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    "nvlink_crc_data_errors_total": FI_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    "nvlink_replay_errors_total": FI_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    "nvlink_recovery_errors_total": FI_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    "nvlink_links": FI_NVLINK_LINK_COUNT,
    "pcie_replays_total": FI_PCIE_REPLAY_COUNTER,
}
"""Schema field → field value, taken as an int as NVML reports it."""

VIOLATION_FIELDS = {
    "power_violation_pct": FI_PERF_POLICY_POWER,
    "thermal_violation_pct": FI_PERF_POLICY_THERMAL,
    "board_limit_violation_pct": FI_PERF_POLICY_BOARD_LIMIT,
}
"""Schema field → violation counter (ns the clocks were held by that policy)."""

MAX_EVENTS_PER_TICK = 64
"""A storm of XIDs is reported a tick at a time rather than holding up the tick."""


@dataclass
class ViolationRates:
    """The previous value and time of each violation counter of one GPU."""

    last: dict[int, tuple[float, float]] = field(default_factory=dict)

    def shares_pct(
        self, values: Mapping[int, float | int | None], now_s: float
    ) -> dict[str, FieldValue | None]:
        out: dict[str, FieldValue | None] = {}
        for name, field_id in VIOLATION_FIELDS.items():
            value = values.get(field_id)
            before = self.last.get(field_id)
            out[name] = None
            if value is None:
                continue
            self.last[field_id] = (float(value), now_s)
            if before is None or now_s <= before[1] or value < before[0]:
                continue  # first value, or the counter restarted with the driver
            held_s = (float(value) - before[0]) / 1e9
            out[name] = min(100.0, 100.0 * held_s / (now_s - before[1]))
        return out


def count_fields(values: Mapping[int, float | int | None]) -> dict[str, FieldValue | None]:
    return {
        name: None if values.get(fid) is None else int(values[fid])  # type: ignore[arg-type]
        for name, fid in COUNT_FIELDS.items()
    }


def links_up(nvml: NvmlLibrary, device: str, handle: object, links: int | None) -> int | None:
    """Active NVLink links, of the ``links`` the GPU has; None where it has none or cannot say."""
    if not links:
        return None
    up = 0
    for link in range(links):
        state = call_nvml(nvml, device, nvml.nvmlDeviceGetNvLinkState, handle, link)
        if state is None:
            return None
        up += state == FEATURE_ENABLED
    return up


class XidWatch:
    """One GPU's NVML event set for XID events; never fails the GPU's other reads."""

    def __init__(self, nvml: NvmlLibrary, device: str, handle: object) -> None:
        self._nvml = nvml
        self._device = device
        self._set: object | None = None
        try:
            event_set = call_nvml(nvml, device, nvml.nvmlEventSetCreate)
            if event_set is None:
                return
            registered = call_nvml(
                nvml,
                device,
                _register,
                nvml,
                handle,
                EVENT_TYPE_XID_CRITICAL_ERROR,
                event_set,
            )
            if registered is None:  # XID events unsupported here, or not permitted
                nvml.nvmlEventSetFree(event_set)
                return
            self._set = event_set
        except (DeviceError, nvml.NVMLError) as e:
            log.warning("%s: XID events unavailable: %s", device, e)

    @property
    def watching(self) -> bool:
        return self._set is not None

    def drain(self) -> Counter[int]:
        """XID codes that arrived since the previous drain (without waiting)."""
        codes: Counter[int] = Counter()
        if self._set is None:
            return codes
        for _ in range(MAX_EVENTS_PER_TICK):
            try:
                event = self._nvml.nvmlEventSetWait_v2(self._set, 0)
            except self._nvml.NVMLError as e:
                if int(getattr(e, "value", -1)) != ERROR_TIMEOUT:  # TIMEOUT: nothing (more)
                    log.warning("%s: reading XID events failed: %s", self._device, e)
                break
            if event.eventType & EVENT_TYPE_XID_CRITICAL_ERROR:
                codes[int(event.eventData)] += 1
        return codes

    def close(self) -> None:
        if self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except self._nvml.NVMLError as e:
                log.debug("%s: nvmlEventSetFree failed: %s", self._device, e)
            self._set = None


def _register(nvml: NvmlLibrary, handle: object, types: int, event_set: object) -> bool:
    nvml.nvmlDeviceRegisterEvents(handle, types, event_set)
    return True
