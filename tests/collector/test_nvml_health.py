"""GPU health through the NVML source: counts, violations, NVLink links and XID events."""

from __future__ import annotations

import pynvml
import pytest

from tests.collector.test_nvml import by_gpu, make_source, tick
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.collector.nvml import open_nvml_source
from wattwise.collector.nvml_api import (
    ERROR_TIMEOUT,
    EVENT_TYPE_XID_CRITICAL_ERROR,
    FEATURE_ENABLED,
    FI_REMAPPED_PENDING,
)
from wattwise.collector.nvml_health import COUNT_FIELDS, VIOLATION_FIELDS
from wattwise.collector.schema import GPU_XID


def xids(readings: list[Reading]) -> dict[tuple[str, str], int]:
    out = {}
    for r in readings:
        if r.measurement == "gpu_xid":
            count = r.fields["count"]
            assert isinstance(count, int)
            out[(r.tags["gpu"], r.tags["xid"])] = count
    return out


def test_field_ids_and_constants_are_pynvml_s() -> None:
    names = {
        "ecc_corrected_aggregate_total": "NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
        "ecc_uncorrected_aggregate_total": "NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
        "retired_pages_sbe": "NVML_FI_DEV_RETIRED_SBE",
        "retired_pages_dbe": "NVML_FI_DEV_RETIRED_DBE",
        "retired_pages_pending": "NVML_FI_DEV_RETIRED_PENDING",
        "remapped_rows_correctable": "NVML_FI_DEV_REMAPPED_COR",
        "remapped_rows_uncorrectable": "NVML_FI_DEV_REMAPPED_UNC",
        "remapped_rows_pending": "NVML_FI_DEV_REMAPPED_PENDING",
        "remapped_rows_failed": "NVML_FI_DEV_REMAPPED_FAILURE",
        "nvlink_crc_flit_errors_total": "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "nvlink_crc_data_errors_total": "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "nvlink_replay_errors_total": "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "nvlink_recovery_errors_total": "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "nvlink_links": "NVML_FI_DEV_NVLINK_LINK_COUNT",
        "pcie_replays_total": "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
    }
    assert {k: getattr(pynvml, v) for k, v in names.items()} == COUNT_FIELDS
    assert VIOLATION_FIELDS == {
        "power_violation_pct": pynvml.NVML_FI_DEV_PERF_POLICY_POWER,
        "thermal_violation_pct": pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL,
        "board_limit_violation_pct": pynvml.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT,
    }
    assert ERROR_TIMEOUT == pynvml.NVML_ERROR_TIMEOUT
    assert pynvml.nvmlEventTypeXidCriticalError == EVENT_TYPE_XID_CRITICAL_ERROR
    assert FEATURE_ENABLED == pynvml.NVML_FEATURE_ENABLED


def test_health_counts_follow_the_gpu() -> None:
    source, nvml, clock = make_source(gpus=2)
    health = nvml.gpus[1].health
    health.update(
        ecc_uncorrected_aggregate_total=3,
        remapped_rows_uncorrectable=2,
        remapped_rows_pending=1,
        nvlink_replay_errors_total=40,
        pcie_replays_total=7,
    )
    readings = source.read()
    sick, well = by_gpu(readings, 1).fields, by_gpu(readings, 0).fields
    assert (sick["ecc_uncorrected_aggregate_total"], sick["remapped_rows_pending"]) == (3, 1)
    assert (sick["remapped_rows_uncorrectable"], sick["nvlink_replay_errors_total"]) == (2, 40)
    assert sick["pcie_replays_total"] == 7
    assert well["remapped_rows_pending"] == 0 and well["remapped_rows_failed"] == 0
    health["remapped_rows_failed"] = 1
    assert by_gpu(tick(source, nvml, clock, 1.0), 1).fields["remapped_rows_failed"] == 1


def test_an_unsupported_health_field_is_missing_not_zero() -> None:
    source, nvml, _ = make_source(gpus=1)
    nvml.gpus[0].unsupported = {FI_REMAPPED_PENDING}
    fields = by_gpu(source.read(), 0).fields
    assert fields["remapped_rows_pending"] is None
    assert fields["remapped_rows_failed"] == 0


def test_violation_counters_become_the_share_of_the_interval_held() -> None:
    source, nvml, clock = make_source(gpus=1)
    first = by_gpu(source.read(), 0).fields
    assert first["power_violation_pct"] is None  # no interval yet
    nvml.gpus[0].health["power_violation_pct"] += 1_500_000_000  # 1.5 s held, in ns
    fields = by_gpu(tick(source, nvml, clock, 2.0), 0).fields
    assert fields["power_violation_pct"] == pytest.approx(75.0)
    assert fields["thermal_violation_pct"] == 0.0


def test_nvlink_links_up_are_counted_on_the_energy_cadence() -> None:
    source, nvml, clock = make_source(gpus=1, energy_every_s=10.0)
    nvml.gpus[0].nvlink_down = {3, 17}
    fields = by_gpu(source.read(), 0).fields
    assert (fields["nvlink_links"], fields["nvlink_links_up"]) == (18, 16)
    assert nvml.count("nvmlDeviceGetNvLinkState", 0) == 18
    assert "nvlink_links_up" not in by_gpu(tick(source, nvml, clock, 1.0), 0).fields
    assert nvml.count("nvmlDeviceGetNvLinkState", 0) == 18  # not every tick


def test_xid_events_become_gpu_xid_readings_once_each() -> None:
    source, nvml, clock = make_source(gpus=2)
    source.read()
    nvml.gpus[1].xid(48)
    nvml.gpus[1].xid(48)
    nvml.gpus[1].xid(94)
    readings = tick(source, nvml, clock, 1.0)
    assert xids(readings) == {("1", "48"): 2, ("1", "94"): 1}
    event = next(r for r in readings if r.measurement == "gpu_xid")
    assert set(event.tags) == set(GPU_XID.tags) - {"cluster", "zone", "rack"}
    assert event.tags["uuid"] == nvml.gpus[1].uuid
    assert xids(tick(source, nvml, clock, 1.0)) == {}  # drained


def test_the_xid_of_a_gpu_that_fell_off_the_bus_is_reported_with_its_failure() -> None:
    source, nvml, clock = make_source(gpus=2)
    source.read()
    nvml.gpus[0].xid(79)
    nvml.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    readings = tick(source, nvml, clock, 1.0)
    assert xids(readings) == {("0", "79"): 1}
    assert by_gpu(readings, 0).fields == {"failed": 1}
    assert by_gpu(readings, 1).fields["failed"] == 0


def test_a_gpu_without_xid_events_is_read_as_usual() -> None:
    nvml, clock = FakeNvml.h100s(1), ManualClock()
    nvml.gpus[0].unsupported = {"nvmlDeviceRegisterEvents"}
    source = open_nvml_source("node1", clock, nvml=nvml)
    nvml.gpus[0].xid(13)
    readings = source.read()
    assert xids(readings) == {}
    assert by_gpu(readings, 0).fields["failed"] == 0
    assert all(s.freed for s in nvml.event_sets)  # the unused set was given back


def test_event_sets_are_freed_on_close() -> None:
    source, nvml, _ = make_source(gpus=3)
    source.read()
    source.close()
    assert len(nvml.event_sets) == 3
    assert all(s.freed for s in nvml.event_sets)
