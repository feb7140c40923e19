"""The NVML source's job-attribution side: GPU processes, last tick's power, JobSource over both."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pynvml
import pytest

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.fake_nvml import FakeNvml, FakeProcess
from wattwise.collector.jobs import GpuProcess, JobSource
from wattwise.collector.nvml import NvmlSource, open_nvml_source
from wattwise.collector.nvml_api import VALUE_NOT_AVAILABLE_ULL
from wattwise.collector.schema import GPU_JOB

PROC = Path(__file__).parent / "fixtures" / "proc"  # the cgroup files test_jobs.py uses
POD_SYSTEMD = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # pid 1004's pod
GIB = 2**30
LISTS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")


def make_source(nvml: FakeNvml) -> tuple[NvmlSource, ManualClock]:
    clock = ManualClock()
    return open_nvml_source("node1", clock, nvml=nvml), clock


def process_lists_called(nvml: FakeNvml) -> int:
    return sum(nvml.count(name) for name in LISTS)


# --- gpu_processes ---------------------------------------------------------------


def test_compute_processes_are_listed_per_gpu() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001, 10 * GIB), FakeProcess(1006, 2 * GIB)]
    nvml.gpus[1].compute_processes = [FakeProcess(1002, 3 * GIB)]
    source, _ = make_source(nvml)
    assert sorted(source.gpu_processes(), key=lambda p: (p.gpu, p.pid)) == [
        GpuProcess(gpu=0, pid=1001, used_mem_bytes=10 * GIB),
        GpuProcess(gpu=0, pid=1006, used_mem_bytes=2 * GIB),
        GpuProcess(gpu=1, pid=1002, used_mem_bytes=3 * GIB),
    ]


def test_process_with_compute_and_graphics_contexts_counts_once_per_gpu() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001, 4 * GIB)]
    nvml.gpus[0].graphics_processes = [FakeProcess(1001, 4 * GIB), FakeProcess(1005, GIB)]
    nvml.gpus[1].graphics_processes = [FakeProcess(1001, GIB)]  # same pid, other GPU: its own
    source, _ = make_source(nvml)
    assert sorted(source.gpu_processes(), key=lambda p: (p.gpu, p.pid)) == [
        GpuProcess(gpu=0, pid=1001, used_mem_bytes=4 * GIB),
        GpuProcess(gpu=0, pid=1005, used_mem_bytes=GIB),
        GpuProcess(gpu=1, pid=1001, used_mem_bytes=GIB),
    ]


@pytest.mark.parametrize(("compute_mem", "graphics_mem"), [(None, 7 * GIB), (7 * GIB, None)])
def test_duplicate_pid_keeps_the_known_memory_over_not_available(
    compute_mem: int | None, graphics_mem: int | None
) -> None:
    nvml = FakeNvml.h100s(1)
    nvml.gpus[0].compute_processes = [FakeProcess(1001, compute_mem)]
    nvml.gpus[0].graphics_processes = [FakeProcess(1001, graphics_mem)]
    source, _ = make_source(nvml)
    assert source.gpu_processes() == [GpuProcess(gpu=0, pid=1001, used_mem_bytes=7 * GIB)]


@pytest.mark.parametrize("code", [pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN])
def test_gpu_failing_while_listing_gives_no_processes_and_does_not_raise(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001)]
    nvml.gpus[1].compute_processes = [FakeProcess(1002)]
    source, _ = make_source(nvml)
    source.read()
    nvml.gpus[1].error = code  # fails after the last tick, before the job source asks
    with caplog.at_level(logging.WARNING):
        processes = source.gpu_processes()
    assert processes == [GpuProcess(gpu=0, pid=1001, used_mem_bytes=GIB)]
    assert any("gpu1" in m and "processes" in m for m in caplog.messages)
    assert source.device_errors_total == 1


def test_gpu_marked_failed_is_not_asked_for_processes_until_it_answers_again() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[1].compute_processes = [FakeProcess(1002)]
    source, _ = make_source(nvml)
    nvml.gpus[1].error = pynvml.NVML_ERROR_GPU_IS_LOST
    source.read()  # the tick marks gpu1 failed
    assert source.gpu_processes() == []
    assert nvml.count("nvmlDeviceGetComputeRunningProcesses", 1) == 0
    nvml.gpus[1].error = None
    source.read()  # re-acquired on the tick
    assert source.gpu_processes() == [GpuProcess(gpu=1, pid=1002, used_mem_bytes=GIB)]


def test_process_listing_not_supported_gives_no_processes_and_no_failure() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001)]
    nvml.gpus[0].unsupported = set(LISTS)
    nvml.gpus[1].compute_processes = [FakeProcess(1002)]
    nvml.gpus[1].unsupported = {"nvmlDeviceGetGraphicsRunningProcesses"}
    source, _ = make_source(nvml)
    assert source.gpu_processes() == [GpuProcess(gpu=1, pid=1002, used_mem_bytes=GIB)]
    assert source.device_errors_total == 0
    assert all(r.fields["failed"] == 0 for r in source.read())


def test_memory_not_available_is_none_not_the_sentinel() -> None:
    nvml = FakeNvml.h100s(1)
    nvml.gpus[0].compute_processes = [FakeProcess(1001, None)]
    source, _ = make_source(nvml)
    assert source.gpu_processes() == [GpuProcess(gpu=0, pid=1001, used_mem_bytes=None)]


class _RawStructNvml(FakeNvml):
    """An NVML binding that hands the driver's struct through, sentinel and all."""

    def nvmlDeviceGetComputeRunningProcesses(self, handle: object, /) -> list[Any]:
        self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        unavailable = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
        return [pynvml.c_nvmlProcessInfo_t(pid=1001, usedGpuMemory=unavailable)]


def test_raw_not_available_sentinel_is_none_not_16_exabytes() -> None:
    assert pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value == VALUE_NOT_AVAILABLE_ULL
    source, _ = make_source(_RawStructNvml(FakeNvml.h100s(1).gpus))
    assert source.gpu_processes() == [GpuProcess(gpu=0, pid=1001, used_mem_bytes=None)]


def test_ticks_never_list_processes() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001)]
    source, clock = make_source(nvml)
    for _ in range(10):
        clock.advance(1.0)
        source.read()
    assert process_lists_called(nvml) == 0


# --- last_power_w ------------------------------------------------------------------


def test_last_power_is_the_power_read_on_the_latest_tick_without_another_call() -> None:
    nvml = FakeNvml.h100s(2)
    source, _ = make_source(nvml)
    assert source.last_power_w(0) is None  # no tick yet
    nvml.gpus[0].power_mw, nvml.gpus[1].power_mw = 612_500, 301_000
    source.read()
    nvml.gpus[0].power_mw = 100_000  # changes after the tick: not seen until the next one
    calls = nvml.count("nvmlDeviceGetPowerUsage")
    assert (source.last_power_w(0), source.last_power_w(1)) == (612.5, 301.0)
    assert nvml.count("nvmlDeviceGetPowerUsage") == calls
    source.read()
    assert source.last_power_w(0) == 100.0


def test_last_power_is_none_for_a_failed_gpu_unsupported_power_or_no_such_gpu() -> None:
    nvml = FakeNvml.h100s(3)
    source, _ = make_source(nvml)
    source.read()
    nvml.gpus[1].error = pynvml.NVML_ERROR_GPU_IS_LOST
    nvml.gpus[2].unsupported = {"nvmlDeviceGetPowerUsage"}
    source.read()
    assert source.last_power_w(0) == 75.0
    assert source.last_power_w(1) is None  # a stale number would be attributed as current
    assert source.last_power_w(2) is None
    assert source.last_power_w(3) is None and source.last_power_w(-1) is None


# --- JobSource over the NVML source ---------------------------------------------------


def _by_tags(readings: list[Reading]) -> dict[tuple[str, str], Reading]:
    return {(r.tags["gpu"], r.tags["job"]): r for r in readings}


def test_job_source_over_nvml_attributes_power_and_memory_per_job() -> None:
    nvml = FakeNvml.h100s(2)
    gpu0, gpu1 = nvml.gpus
    gpu0.power_mw, gpu1.power_mw = 600_000, 300_000
    # Slurm job 4242 has two ranks on GPU 0 (1001, 1006), one with a graphics context too;
    # a pod (1004) shares GPU 0. Slurm job 4243 (1002) and a login shell (1005) use GPU 1.
    gpu0.compute_processes = [
        FakeProcess(1001, 10 * GIB),
        FakeProcess(1006, 2 * GIB),
        FakeProcess(1004, GIB),
    ]
    gpu0.graphics_processes = [FakeProcess(1001, 10 * GIB)]
    gpu1.compute_processes = [FakeProcess(1002, None), FakeProcess(1005, GIB)]
    source, clock = make_source(nvml)
    jobs = JobSource(
        host="node1",
        clock=clock,
        gpu_processes=source.gpu_processes,
        gpu_power_w=source.last_power_w,
        proc_root=PROC,
        interval_s=30.0,
    )
    emitted: list[list[Reading]] = []
    for _ in range(61):  # the agent's order: every source once per 1 s tick
        source.read()
        emitted.append(list(jobs.read()))
        clock.advance(1.0)

    assert [i for i, readings in enumerate(emitted) if readings] == [0, 30, 60]
    assert nvml.count("nvmlDeviceGetComputeRunningProcesses", 0) == 3  # only when asked
    by_tags = _by_tags(emitted[60])
    assert set(by_tags) == {("0", "4242"), ("0", f"pod-{POD_SYSTEMD}"), ("1", "4243")}
    assert by_tags[("0", "4242")].tags == {
        "host": "node1",
        "gpu": "0",
        "job": "4242",
        "scheduler": "slurm",
    }
    assert by_tags[("0", "4242")].fields == {
        "processes": 2,
        "used_mem_bytes": 12 * GIB,
        "power_w": 300.0,
    }
    assert by_tags[("0", f"pod-{POD_SYSTEMD}")].fields == {
        "processes": 1,
        "used_mem_bytes": GIB,
        "power_w": 300.0,
    }
    assert by_tags[("1", "4243")].fields == {
        "processes": 1,
        "used_mem_bytes": None,
        "power_w": 300.0,
    }
    for reading in emitted[60]:
        assert reading.measurement == "gpu_job"
        assert set(reading.tags) <= set(GPU_JOB.tags)
        for name, value in reading.fields.items():
            assert value is None or type(value) is GPU_JOB.fields[name].kind, name


def test_job_source_over_nvml_skips_a_lost_gpu_and_keeps_the_others() -> None:
    nvml = FakeNvml.h100s(2)
    nvml.gpus[0].compute_processes = [FakeProcess(1001, GIB)]
    nvml.gpus[1].compute_processes = [FakeProcess(1002, GIB)]
    source, clock = make_source(nvml)
    jobs = JobSource(
        host="node1",
        clock=clock,
        gpu_processes=source.gpu_processes,
        gpu_power_w=source.last_power_w,
        proc_root=PROC,
    )
    nvml.gpus[1].error = pynvml.NVML_ERROR_GPU_IS_LOST
    source.read()
    readings = list(jobs.read())
    assert [(r.tags["gpu"], r.tags["job"], r.fields["power_w"]) for r in readings] == [
        ("0", "4242", 75.0)
    ]
