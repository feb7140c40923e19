from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from wattwise.clock import ManualClock
from wattwise.collector.base import Source
from wattwise.collector.host import HOST_SOURCE_FIELDS, HostSource
from wattwise.collector.hwmon import HwmonReader
from wattwise.collector.rapl import RaplReader, counter_delta_uj
from wattwise.collector.schema import HOST

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
Memory = namedtuple("Memory", "total available")
Disk = namedtuple("Disk", "read_bytes write_bytes")
Nic = namedtuple("Nic", "bytes_sent bytes_recv")


class FakePsutil:
    """Counters a test sets; the kernel-facing boundary of psutil."""

    def __init__(self) -> None:
        self.cpu = CpuTimes(100.0, 0.0, 50.0, 800.0, 50.0, 0.0, 0.0, 0.0, 10.0, 0.0)
        self.disk = Disk(1_000_000, 2_000_000)
        self.nics = {"lo": Nic(9_999_999, 9_999_999), "eth0": Nic(500, 1_000)}
        self.fail_memory = False

    def cpu_times(self) -> Any:
        return self.cpu

    def getloadavg(self) -> tuple[float, float, float]:
        return (1.5, 1.0, 0.5)

    def virtual_memory(self) -> Any:
        if self.fail_memory:
            raise OSError("/proc/meminfo unreadable")
        return Memory(total=64 * 2**30, available=48 * 2**30)

    def disk_io_counters(self, perdisk: bool = False) -> Any:
        return self.disk

    def net_io_counters(self, pernic: bool = False) -> Any:
        return self.nics


@pytest.fixture
def intel_sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "sysfs_intel_2s", root)
    return root


def _set_energy(root: Path, zone: str, value_uj: int) -> None:
    (root / "class" / "powercap" / zone / "energy_uj").write_text(f"{value_uj}\n")


def _check_schema_types(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        assert name in HOST.fields, name
        if value is not None:
            assert type(value) is HOST.fields[name].kind, (name, value)


def test_first_read_has_rates_missing_not_zero(intel_sysfs: Path) -> None:
    source = HostSource(
        host="n1", clock=ManualClock(), sysfs_root=intel_sysfs, psutil_module=FakePsutil()
    )
    assert isinstance(source, Source)
    [reading] = source.read()
    assert reading.measurement == "host"
    assert reading.tags == {"host": "n1"}
    for rate in (
        "cpu_util_pct",
        "disk_read_bytes_per_s",
        "net_rx_bytes_per_s",
        "cpu_energy_j",
        "cpu_power_w",
    ):
        assert reading.fields[rate] is None
    assert reading.fields["load1"] == 1.5
    assert reading.fields["mem_used_bytes"] == 16 * 2**30
    assert reading.fields["cpu_temp_c"] == 61.0
    assert set(reading.fields) == set(HOST_SOURCE_FIELDS)
    _check_schema_types(dict(reading.fields))


def test_second_read_computes_rates_over_monotonic_interval(intel_sysfs: Path) -> None:
    clock = ManualClock()
    ps = FakePsutil()
    source = HostSource(host="n1", clock=clock, sysfs_root=intel_sysfs, psutil_module=ps)
    source.read()
    clock.advance(2.0)
    ps.cpu = ps.cpu._replace(user=ps.cpu.user + 30.0, idle=ps.cpu.idle + 10.0, guest=99.0)
    ps.disk = Disk(1_000_000 + 4_000, 2_000_000 + 8_000)
    ps.nics = {"lo": Nic(0, 0), "eth0": Nic(500 + 200, 1_000 + 600)}
    _set_energy(intel_sysfs, "intel-rapl:0", 262143000000 + 150_000_000)
    _set_energy(intel_sysfs, "intel-rapl:1", 1000000000 + 250_000_000)
    [reading] = source.read()
    fields = reading.fields
    assert fields["cpu_util_pct"] == pytest.approx(75.0)  # 30 busy of 40 (guest not counted)
    assert fields["disk_read_bytes_per_s"] == 2_000.0
    assert fields["disk_write_bytes_per_s"] == 4_000.0
    assert fields["net_rx_bytes_per_s"] == 300.0  # loopback excluded
    assert fields["net_tx_bytes_per_s"] == 100.0
    # Both packages, not the core/dram subzones nor the MMIO duplicate.
    assert fields["cpu_energy_j"] == pytest.approx(400.0)
    assert fields["cpu_power_w"] == pytest.approx(200.0)
    _check_schema_types(dict(fields))


def test_rapl_counter_wraps_at_max_energy_range() -> None:
    max_range = 262143328850
    assert counter_delta_uj(max_range - 1_000_000, 2_000_000, max_range) == 3_000_000
    assert counter_delta_uj(5, 9, max_range) == 4


def test_rapl_wraparound_between_reads(intel_sysfs: Path) -> None:
    rapl = RaplReader(intel_sysfs)
    assert rapl.energy_since_last_j() is None
    _set_energy(intel_sysfs, "intel-rapl:0", 1_000_000)  # wrapped past 262143328850
    _set_energy(intel_sysfs, "intel-rapl:1", 1000000000)
    energy_j = rapl.energy_since_last_j()
    assert energy_j == pytest.approx((262143328850 - 262143000000 + 1_000_000) / 1e6)


def test_counter_reset_gives_missing_rate_not_negative(intel_sysfs: Path) -> None:
    clock = ManualClock()
    ps = FakePsutil()
    source = HostSource(host="n1", clock=clock, sysfs_root=intel_sysfs, psutil_module=ps)
    source.read()
    clock.advance(1.0)
    ps.disk = Disk(10, 10)  # counters went back (device re-attached)
    [reading] = source.read()
    assert reading.fields["disk_read_bytes_per_s"] is None


def test_one_failing_piece_leaves_only_its_fields_missing(intel_sysfs: Path) -> None:
    ps = FakePsutil()
    ps.fail_memory = True
    source = HostSource(host="n1", clock=ManualClock(), sysfs_root=intel_sysfs, psutil_module=ps)
    [reading] = source.read()
    assert reading.fields["mem_used_bytes"] is None
    assert reading.fields["mem_total_bytes"] is None
    assert reading.fields["load1"] == 1.5
    assert reading.fields["cpu_temp_c"] == 61.0


def test_no_powercap_or_hwmon_gives_missing(tmp_path: Path) -> None:
    clock = ManualClock()
    ps = FakePsutil()
    source = HostSource(host="n1", clock=clock, sysfs_root=tmp_path, psutil_module=ps)
    source.read()
    clock.advance(1.0)
    ps.cpu = ps.cpu._replace(idle=ps.cpu.idle + 100.0)
    [reading] = source.read()
    assert reading.fields["cpu_energy_j"] is None
    assert reading.fields["cpu_temp_c"] is None
    assert reading.fields["cpu_util_pct"] == 0.0


def test_amd_k10temp_prefers_tctl_over_ccd_and_ignores_gpu_sensor() -> None:
    assert HwmonReader(FIXTURES / "sysfs_amd").hottest_package_c() == 68.25


def test_hwmon_rediscovers_when_chip_renumbered(intel_sysfs: Path) -> None:
    reader = HwmonReader(intel_sysfs)
    assert reader.hottest_package_c() == 61.0
    hwmon = intel_sysfs / "class" / "hwmon"
    (hwmon / "hwmon2").rename(hwmon / "hwmon7")  # driver reload renumbers the chip
    (hwmon / "hwmon7" / "temp1_input").write_text("70000\n")
    assert reader.hottest_package_c() == 45.0  # this read lost the chip…
    assert reader.hottest_package_c() == 70.0  # …the next one found it again


def test_rapl_zone_vanishing_is_missing_then_recovers(intel_sysfs: Path) -> None:
    rapl = RaplReader(intel_sysfs)
    rapl.energy_since_last_j()
    zone = intel_sysfs / "class" / "powercap" / "intel-rapl:1"
    moved = zone.with_name("gone")
    zone.rename(moved)
    assert rapl.energy_since_last_j() is None
    moved.rename(zone)
    assert rapl.energy_since_last_j() is None  # first read after rediscovery
    _set_energy(intel_sysfs, "intel-rapl:1", 1000000000 + 1_000_000)
    assert rapl.energy_since_last_j() == pytest.approx(1.0)


@pytest.fixture
def world_readable_sysfs() -> Iterator[Path]:
    # tmp_path sits under a 0700 directory another user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="wattwise-sysfs-"))
    os.chmod(root, 0o755)
    shutil.copytree(FIXTURES / "sysfs_intel_2s", root / "sys")
    yield root / "sys"
    shutil.rmtree(root)


def _read_three_ticks_as_nobody(sysfs_root: Path) -> dict[str, Any]:
    """Read the tree in a forked child that dropped root, as an unprivileged agent would."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            warnings: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("wattwise").addHandler(handler)
            clock = ManualClock()
            source = HostSource(
                host="n1", clock=clock, sysfs_root=sysfs_root, psutil_module=FakePsutil()
            )
            ticks = []
            for _ in range(3):
                ticks.append(dict(source.read()[0].fields))
                clock.advance(1.0)
            os.write(write_end, json.dumps({"fields": ticks, "warnings": warnings}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    return dict(json.loads(output))


def test_rapl_root_only_is_missing_with_one_warning(world_readable_sysfs: Path) -> None:
    for energy in world_readable_sysfs.glob("class/powercap/*/energy_uj"):
        # 0400 root-owned as the kernel ships it since CVE-2020-8694; a non-root
        # test run owns the copy, so it takes away its own read access instead.
        energy.chmod(0o400 if os.geteuid() == 0 else 0o000)
    result = _read_three_ticks_as_nobody(world_readable_sysfs)
    third = result["fields"][2]
    assert third["cpu_energy_j"] is None
    assert third["cpu_power_w"] is None
    assert third["cpu_temp_c"] == 61.0  # the rest still reads
    rapl_warnings = [w for w in result["warnings"] if "root" in w]
    assert len(rapl_warnings) == 1
    assert "udev" in rapl_warnings[0]


def test_real_psutil_gives_schema_typed_values(tmp_path: Path) -> None:
    clock = ManualClock()
    source = HostSource(host="n1", clock=clock, sysfs_root=tmp_path, psutil_module=psutil)
    source.read()
    clock.advance(0.5)
    [reading] = source.read()
    fields = dict(reading.fields)
    _check_schema_types(fields)
    assert fields["mem_total_bytes"] == psutil.virtual_memory().total
    assert isinstance(fields["load1"], float) and fields["load1"] >= 0.0
    net_rx = fields["net_rx_bytes_per_s"]
    assert isinstance(net_rx, float) and net_rx >= 0.0
