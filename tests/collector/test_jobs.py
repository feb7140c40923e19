from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading, Source
from wattwise.collector.jobs import GpuProcess, Job, JobSource, job_from_cgroup
from wattwise.collector.schema import GPU_JOB

PROC = Path(__file__).parent / "fixtures" / "proc"
POD_V1 = "6d7b8c3e-1f2a-4b5c-8d9e-0a1b2c3d4e5f"
POD_SYSTEMD = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def _cgroup(pid: int) -> str:
    return (PROC / str(pid) / "cgroup").read_text()


@pytest.mark.parametrize(
    ("pid", "expected"),
    [
        (1001, Job("slurm", "4242")),  # cgroup v1, name=systemd line names slurmd.service
        (1002, Job("slurm", "4243")),  # cgroup v2, slurmstepd.scope
        (1003, Job("kubernetes", f"pod-{POD_V1}")),  # cgroupfs driver, v1
        (1004, Job("kubernetes", f"pod-{POD_SYSTEMD}")),  # systemd driver, uid with '_'
        (1007, Job("kubernetes", "pod-ffff2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),  # guaranteed QoS
        (1005, None),  # a login session is no job
    ],
)
def test_job_from_real_cgroup_files(pid: int, expected: Job | None) -> None:
    assert job_from_cgroup(_cgroup(pid)) == expected


def test_pod_resolver_names_the_pod() -> None:
    names = {POD_SYSTEMD: "ml/trainer-0"}
    assert job_from_cgroup(_cgroup(1004), names.get) == Job("kubernetes", "ml/trainer-0")
    assert job_from_cgroup(_cgroup(1003), names.get) == Job("kubernetes", f"pod-{POD_V1}")


def test_slurmd_service_alone_is_not_a_job() -> None:
    assert job_from_cgroup("0::/system.slice/slurmd.service\n") is None


def _by_tags(readings: list[Reading]) -> dict[tuple[str, str], Reading]:
    return {(r.tags["gpu"], r.tags["job"]): r for r in readings}


def test_gpu_power_is_split_between_the_jobs_on_each_gpu() -> None:
    processes = [
        GpuProcess(gpu=0, pid=1001, used_mem_bytes=10 * 2**30),
        GpuProcess(gpu=0, pid=1006, used_mem_bytes=2 * 2**30),  # same job, second rank
        GpuProcess(gpu=0, pid=1004, used_mem_bytes=1 * 2**30),
        GpuProcess(gpu=1, pid=1002, used_mem_bytes=None),
        GpuProcess(gpu=1, pid=1005, used_mem_bytes=5),  # not a job: no reading, no share
        GpuProcess(gpu=1, pid=999_999, used_mem_bytes=5),  # exited: skipped silently
    ]
    power_w = {0: 600.0, 1: 300.0}
    source = JobSource(
        host="n1",
        clock=ManualClock(),
        proc_root=PROC,
        gpu_processes=lambda: processes,
        gpu_power_w=power_w.get,
    )
    assert isinstance(source, Source)
    readings = list(source.read())
    by_tags = _by_tags(readings)
    assert set(by_tags) == {("0", "4242"), ("0", f"pod-{POD_SYSTEMD}"), ("1", "4243")}
    slurm = by_tags[("0", "4242")]
    assert slurm.measurement == "gpu_job"
    assert slurm.tags == {"host": "n1", "gpu": "0", "job": "4242", "scheduler": "slurm"}
    assert slurm.fields == {"processes": 2, "used_mem_bytes": 12 * 2**30, "power_w": 300.0}
    assert by_tags[("0", f"pod-{POD_SYSTEMD}")].tags["scheduler"] == "kubernetes"
    assert by_tags[("1", "4243")].fields == {
        "processes": 1,
        "used_mem_bytes": None,
        "power_w": 300.0,
    }
    for reading in readings:
        assert set(reading.tags) <= set(GPU_JOB.tags)
        for name, value in reading.fields.items():
            assert value is None or type(value) is GPU_JOB.fields[name].kind


def test_writes_at_a_low_rate() -> None:
    clock = ManualClock()
    calls: list[int] = []

    def processes() -> list[GpuProcess]:
        calls.append(1)
        return [GpuProcess(gpu=0, pid=1002, used_mem_bytes=1)]

    source = JobSource(
        host="n1", clock=clock, proc_root=PROC, gpu_processes=processes, interval_s=30.0
    )
    assert len(source.read()) == 1
    clock.advance(29.0)
    assert source.read() == []
    assert len(calls) == 1  # NVML is not even asked between intervals
    clock.advance(1.0)
    [reading] = source.read()
    assert reading.fields["power_w"] is None  # no power callable: missing, not zero


def test_no_gpu_processes_writes_nothing() -> None:
    source = JobSource(host="n1", clock=ManualClock(), proc_root=PROC, gpu_processes=list)
    assert source.read() == []
