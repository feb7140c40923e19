"""Per-job attribution: which Slurm job or Kubernetes pod uses each GPU.

The GPU processes (from NVML in production) are mapped to a job through
``<proc>/<pid>/cgroup``, which names the Slurm job or the pod in both cgroup
v1 and v2 and with the cgroupfs and systemd drivers. The pids must be the
host's: an agent in a container needs the host pid namespace.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.clock import Clock
from wattwise.collector.base import Reading

# v1 `/slurm/uid_1000/job_42/step_0`, v2 `/system.slice/slurmstepd.scope/job_42/step_0`.
_SLURM_JOB = re.compile(r"/job_(\d+)(?:/|$)")
# cgroupfs `/kubepods/burstable/pod<uid>/…`; systemd `kubepods-burstable-pod<uid>.slice`
# where the uid's dashes are written as underscores.
_K8S_POD = re.compile(
    r"kubepods.*?[/-]pod([0-9a-fA-F]{8}[-_](?:[0-9a-fA-F]{4}[-_]){3}[0-9a-fA-F]{12})"
)


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding a context on a GPU, as NVML lists it."""

    gpu: int
    pid: int
    used_mem_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A scheduler's unit of work: ``scheduler`` is ``slurm`` or ``kubernetes``."""

    scheduler: str
    job_id: str


PodResolver = Callable[[str], str | None]
"""Maps a pod uid to ``namespace/name``; None when it does not know the pod."""


def job_from_cgroup(cgroup_text: str, pod_resolver: PodResolver | None = None) -> Job | None:
    """The job named by a ``/proc/<pid>/cgroup`` file's content, or None."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        slurm = _SLURM_JOB.search(path)
        if slurm and ("slurm" in path):
            return Job("slurm", slurm.group(1))
        pod = _K8S_POD.search(path)
        if pod:
            uid = pod.group(1).replace("_", "-").lower()
            name = pod_resolver(uid) if pod_resolver else None
            return Job("kubernetes", name or f"pod-{uid}")
    return None


class JobSource:
    """Writes ``gpu_job`` readings, at most once per ``interval_s``."""

    name = "jobs"

    def __init__(
        self,
        *,
        host: str,
        clock: Clock,
        gpu_processes: Callable[[], Sequence[GpuProcess]],
        gpu_power_w: Callable[[int], float | None] | None = None,
        proc_root: Path = Path("/proc"),
        interval_s: float = 30.0,
        pod_resolver: PodResolver | None = None,
    ) -> None:
        self._host = host
        self._clock = clock
        self._gpu_processes = gpu_processes
        self._gpu_power_w = gpu_power_w
        self._proc_root = proc_root
        self._interval_s = interval_s
        self._pod_resolver = pod_resolver
        self._last_emit_at: float | None = None

    def read(self) -> Sequence[Reading]:
        now = self._clock.monotonic()
        if self._last_emit_at is not None and now - self._last_emit_at < self._interval_s:
            return []
        self._last_emit_at = now
        per_gpu = self._processes_by_gpu_and_job()
        stamp_ns = self._clock.time_ns()
        readings: list[Reading] = []
        for gpu, jobs in sorted(per_gpu.items()):
            power_w = self._gpu_power_w(gpu) if self._gpu_power_w else None
            # Without per-process energy, the GPU's power is split evenly by job.
            share_w = power_w / len(jobs) if power_w is not None else None
            for job, processes in sorted(jobs.items(), key=lambda kv: kv[0].job_id):
                readings.append(self._reading(gpu, job, processes, share_w, stamp_ns))
        return readings

    def close(self) -> None:
        """Nothing is held open."""

    def _processes_by_gpu_and_job(self) -> dict[int, dict[Job, list[GpuProcess]]]:
        per_gpu: dict[int, dict[Job, list[GpuProcess]]] = defaultdict(lambda: defaultdict(list))
        for process in self._gpu_processes():
            job = self._job_of(process.pid)
            if job is not None:
                per_gpu[process.gpu][job].append(process)
        return per_gpu

    def _job_of(self, pid: int) -> Job | None:
        try:
            cgroup_text = (self._proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            return None  # the process ended between NVML's list and this read
        return job_from_cgroup(cgroup_text, self._pod_resolver)

    def _reading(
        self,
        gpu: int,
        job: Job,
        processes: list[GpuProcess],
        power_w: float | None,
        stamp_ns: int,
    ) -> Reading:
        memory = [p.used_mem_bytes for p in processes]
        used_mem = None if any(m is None for m in memory) else sum(m for m in memory if m)
        return Reading(
            "gpu_job",
            {"host": self._host, "gpu": str(gpu), "job": job.job_id, "scheduler": job.scheduler},
            {"processes": len(processes), "used_mem_bytes": used_mem, "power_w": power_w},
            stamp_ns,
        )
