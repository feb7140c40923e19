"""Workloads: what runs on each simulated GPU, job by job, with idle gaps between."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from wattwise.collector.sim.dvfs import Bools, Floats, Ints


class WorkloadSpec(BaseModel):
    """A kind of job: how hard it drives the SMs and memory and how long it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: float = Field(1.0, gt=0, description="relative share of jobs of this kind")
    compute: float = Field(ge=0, le=1, description="SM activity of its kernels (c)")
    memory: float = Field(ge=0, le=1, description="memory activity of its kernels (m)")
    memory_bound: float = Field(
        ge=0, le=1, description="μ: 0 = throughput follows the SM clock, 1 = independent of it"
    )
    duty_min: float = Field(gt=0, le=1, description="lowest share of time kernels run")
    duty_max: float = Field(gt=0, le=1, description="highest share of time kernels run")
    mean_length_s: float = Field(gt=0, description="mean job length (exponential)")
    mem_fraction: float = Field(0.5, ge=0, le=1, description="share of device memory it uses")
    burst_enforcement: float = Field(
        0.5,
        ge=0,
        le=1,
        description="how much of its kernel bursts the power controller acts on (0: only the "
        "mean within the second counts; 1: every burst is held under the limit)",
    )


DEFAULT_WORKLOADS: tuple[WorkloadSpec, ...] = (
    WorkloadSpec(
        name="training",
        weight=3.0,
        # Real H100 transformer training at batch sizes 32 and 96 drew 614–674 W uncapped
        # at 1980 MHz: its kernels keep about half the SMs' full power busy.
        compute=0.55,
        memory=0.35,
        memory_bound=0.1,
        duty_min=0.9,
        duty_max=1.0,
        mean_length_s=1800.0,
        mem_fraction=0.85,
    ),
    WorkloadSpec(
        name="inference",
        weight=2.0,
        compute=0.6,
        memory=0.5,
        memory_bound=0.5,
        duty_min=0.3,
        duty_max=0.7,
        mean_length_s=600.0,
        mem_fraction=0.5,
    ),
    WorkloadSpec(
        name="memory_bound",
        weight=1.0,
        compute=0.05,
        memory=1.0,
        memory_bound=0.95,
        duty_min=0.8,
        duty_max=1.0,
        mean_length_s=900.0,
        mem_fraction=0.7,
    ),
)
"""A mix of LLM training (compute-bound), inference (mixed) and memory-bound jobs."""

DUTY_JITTER = 0.03
"""Relative jitter of a job's duty from one sub-step to the next (batches differ)."""


@dataclass(slots=True)
class Jobs:
    """The job (or idle gap) of every GPU, as arrays; ``kind`` −1 means no job."""

    kind: Ints
    duty: Floats
    remaining_s: Floats
    compute: Floats
    memory: Floats
    memory_bound: Floats
    mem_fraction: Floats
    burst_enforcement: Floats

    @classmethod
    def idle(cls, count: int) -> Jobs:
        zeros = np.zeros(count)
        return cls(
            kind=np.full(count, -1, dtype=np.int64),
            duty=zeros.copy(),
            remaining_s=np.full(count, np.inf),
            compute=zeros.copy(),
            memory=zeros.copy(),
            memory_bound=zeros.copy(),
            mem_fraction=zeros.copy(),
            burst_enforcement=zeros.copy(),
        )

    @property
    def has_job(self) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
        return self.kind >= 0

    def start(self, index: int, kind: int, w: WorkloadSpec, duty: float, length_s: float) -> None:
        """Put a job of kind ``w`` on GPU ``index``."""
        self.kind[index] = kind
        self.duty[index] = duty
        self.remaining_s[index] = length_s
        self.compute[index] = w.compute
        self.memory[index] = w.memory
        self.memory_bound[index] = w.memory_bound
        self.mem_fraction[index] = w.mem_fraction
        self.burst_enforcement[index] = w.burst_enforcement

    def stop(self, index: int, gap_s: float) -> None:
        """End the job on GPU ``index``; it stays idle for ``gap_s``."""
        self.kind[index] = -1
        self.duty[index] = 0.0
        self.remaining_s[index] = gap_s
        self.compute[index] = self.memory[index] = self.memory_bound[index] = 0.0
        self.mem_fraction[index] = self.burst_enforcement[index] = 0.0


class Scheduler:
    """Draws jobs and idle gaps from a seeded generator (same seed, same jobs)."""

    def __init__(
        self, workloads: Sequence[WorkloadSpec], idle_gap_mean_s: float, rng: np.random.Generator
    ) -> None:
        self._workloads = tuple(workloads)
        weights = np.array([w.weight for w in self._workloads], dtype=np.float64)
        self._weights = weights / weights.sum() if len(weights) else weights
        self._gap_mean_s = idle_gap_mean_s
        self._rng = rng

    @property
    def workloads(self) -> tuple[WorkloadSpec, ...]:
        return self._workloads

    def populate(self, jobs: Jobs, busy_share: float) -> None:
        """Give about ``busy_share`` of the GPUs a job already under way; the rest wait."""
        for index in range(len(jobs.kind)):
            if self._workloads and self._rng.random() < busy_share:
                self._start_random(jobs, index)
                jobs.remaining_s[index] *= self._rng.random()
            else:
                jobs.stop(index, self._gap())

    def step(self, jobs: Jobs, dt_s: float, paused: Bools) -> None:
        """Advance job clocks; start or end jobs whose time ran out. Jobs on GPUs marked
        ``paused`` (waiting for their node to boot) keep their time; idle gaps run on."""
        jobs.remaining_s -= np.where(jobs.has_job & paused, 0.0, dt_s)
        for index in np.flatnonzero(jobs.remaining_s <= 0).tolist():
            if jobs.kind[index] >= 0 or not self._workloads:
                jobs.stop(index, self._gap())
            else:
                self._start_random(jobs, index)

    def jittered_duty(self, jobs: Jobs) -> Floats:
        """This sub-step's duty: the job's duty with a little seeded noise."""
        noise = 1.0 + DUTY_JITTER * self._rng.standard_normal(len(jobs.duty))
        return np.clip(jobs.duty * noise, 0.0, 1.0)

    def _gap(self) -> float:
        return float(self._rng.exponential(self._gap_mean_s)) if self._workloads else np.inf

    def _start_random(self, jobs: Jobs, index: int) -> None:
        kind = int(self._rng.choice(len(self._workloads), p=self._weights))
        w = self._workloads[kind]
        duty = float(self._rng.uniform(w.duty_min, w.duty_max))
        jobs.start(index, kind, w, duty, float(self._rng.exponential(w.mean_length_s)))
