"""Workload profiles: what a job (or an operator's class of jobs) draws and how it responds to a
power cap, for placement to predict a new job's load.

Per job — rows of ``job_series`` (tags host, gpu, job) matched to the same GPU's
``gpu_series`` bucket — or per class label, pooling the jobs an operator maps to it:

- ``mean_power_w``: mean board power per GPU while the job held it;
- ``duty``: share of the time the GPU was busy (mean utilization);
- ``boundness``: memory-boundness μ, from :func:`.cap_response.estimate_workloads`;
- ``cap_sensitivity_pct_per_100w``: predicted slowdown (%) when the limit is lowered by
  100 W from the limit the job ran under.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import (
    CapResponseModel,
    GpuWorkloads,
    estimate_workloads,
)
from wattwise.optimizer.models.common import ModelInfo, column, factorize, group_codes, tag
from wattwise.optimizer.models.job_rows import held_rows_by_label, job_row_of_gpu_rows
from wattwise.optimizer.telemetry import Series

VERSION = 1
CAP_STEP_W = 100.0
UNLIMITED_WINDOW_S = 1e9
"""~30 years: profiles cover the whole window, not only the last minutes of a GPU's work."""


@dataclass(frozen=True, slots=True)
class WorkloadProfile:
    """One job's (or class's) work; slotted: a fleet-day has ~600,000 of them."""

    name: str
    """The job id, or the class label."""
    kind: str
    """"job" or "class"."""
    gpu_model: str
    gpus: int
    samples: int
    window_start_ns: int
    window_end_ns: int
    mean_power_w: float
    duty: float
    boundness: float
    cap_sensitivity_pct_per_100w: float


@dataclass(frozen=True, eq=False)
class WorkloadProfiles(Mapping[str, WorkloadProfile]):
    """The profiles of one refit as one model: read by name like a dict, kept in the model
    registry as a whole (kind ``workload``, scope ``fleet``) with the info of the set."""

    by_name: Mapping[str, WorkloadProfile] = field(default_factory=dict)
    info: ModelInfo = field(
        default_factory=lambda: ModelInfo("workload", "fleet", VERSION, 0, 0, 0)
    )

    def __getitem__(self, name: str) -> WorkloadProfile:
        return self.by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)


def profile_set(profiles: Mapping[str, WorkloadProfile]) -> WorkloadProfiles:
    """``profiles`` as one model; its window spans theirs and its samples are their sum.

    No cross-validated error: a profile is a mean of measurements, not a prediction
    (its cap sensitivity comes from the cap-response model, whose error is listed there).
    """
    listed = profiles.values()
    start = min((p.window_start_ns for p in listed), default=0)
    end = max((p.window_end_ns for p in listed), default=0)
    samples = sum(p.samples for p in listed)
    kinds = sorted({p.kind for p in listed})
    notes = f"{len(profiles)} {'/'.join(kinds) or 'job'} profiles"
    info = ModelInfo("workload", "fleet", VERSION, start, end, samples, {}, notes)
    return WorkloadProfiles(dict(profiles), info)


PROFILE_CHUNK_ROWS = 100_000
"""GPU rows profiled at a time: bounds the job-labelled copy on fleets of 10,000 GPUs."""
PROFILE_COLUMNS = (
    "power_w",
    "util_gpu_pct",
    "util_mem_pct",
    "sm_clock_mhz",
    "temp_c",
    "capped_share",
    "enforced_limit_w",
    "power_limit_w",
)
"""The ``gpu_series`` columns a profile reads (nothing else is copied)."""


def job_profiles(
    jobs: Series,
    gpus: Series,
    models: Mapping[str, CapResponseModel],
    classes: Mapping[str, str] | None = None,
) -> dict[str, WorkloadProfile]:
    """Profiles per job, or per class when ``classes`` maps job ids to class labels (jobs
    without a class are then left out)."""
    job_codes, job_ids = factorize(tag(jobs, "job"))
    names = job_ids.astype(str)
    kind = "job"
    if classes is not None:
        labels = np.array([classes.get(j, "") for j in names], dtype=object)
        label_codes, names = factorize(labels)
        names = names.astype(str)
        job_codes = label_codes[job_codes]
        kind = "class"
    unlabelled = np.flatnonzero(names == "")
    if len(names) < 2**31:  # a job row's label in half the memory: 37 MiB a fleet-day
        job_codes = job_codes.astype(np.int32)
    held, label = held_rows_by_label(job_row_of_gpu_rows(jobs, gpus), job_codes)
    del job_codes
    if unlabelled.size:
        keep = label != unlabelled[0]
        held, label = held[keep], label[keep]
    out: dict[str, WorkloadProfile] = {}
    for rows, codes in _chunks(held, label):
        out.update(_profile_chunk(gpus, rows, names[codes], models, kind))
    return out


def _chunks(rows: np.ndarray, codes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Runs of ``rows`` (sorted by ``codes``) of about :data:`PROFILE_CHUNK_ROWS`, never
    splitting one label."""
    begin = 0
    while begin < rows.size:
        end = min(begin + PROFILE_CHUNK_ROWS, rows.size)
        if end < rows.size:
            end = int(np.searchsorted(codes, codes[end - 1], side="right"))
        yield rows[begin:end], codes[begin:end]
        begin = end


def _profile_chunk(
    gpus: Series,
    rows: np.ndarray,
    label: np.ndarray,
    models: Mapping[str, CapResponseModel],
    kind: str,
) -> dict[str, WorkloadProfile]:
    labelled = Series(
        gpus.time_ns[rows],
        {
            "host": np.asarray(label, dtype=object),
            "gpu": np.full(rows.size, "", dtype=object),
            "model": tag(gpus, "model", "unknown")[rows],
        },
        {c: gpus.values[c][rows] for c in PROFILE_COLUMNS if c in gpus.values},
    )
    work = estimate_workloads(
        labelled, dict(models), recent_s=UNLIMITED_WINDOW_S, since_change=False
    )
    codes, names = factorize(tag(labelled, "host"))
    where = np.searchsorted(names.astype(str), work.host.astype(str))
    reference = _mean_by_code(codes, len(names), _limits(labelled))[where]
    sensitivity = _cap_sensitivity(work, reference)
    duty = _mean_by_code(codes, len(names), column(labelled, "util_gpu_pct") / 100.0)[where]
    power = _mean_by_code(codes, len(names), column(labelled, "power_w"))[where]
    gpu_key = group_codes(tag(gpus, "host")[rows], tag(gpus, "gpu")[rows])
    gpus_per = _distinct_per_code(codes, gpu_key, len(names))[where]
    return {
        str(name): WorkloadProfile(
            name=str(name),
            kind=kind,
            gpu_model=str(work.model[k]),
            gpus=int(gpus_per[k]),
            samples=int(work.samples[k]),
            window_start_ns=int(work.window_start_ns[k]),
            window_end_ns=int(work.window_end_ns[k]),
            mean_power_w=float(power[k]),
            duty=float(duty[k]),
            boundness=float(work.boundness[k]),
            cap_sensitivity_pct_per_100w=float(sensitivity[k]),
        )
        for k, name in enumerate(work.host)
    }


def _distinct_per_code(codes: np.ndarray, keys: np.ndarray, size: int) -> np.ndarray:
    """How many distinct ``keys`` each code has."""
    width = int(keys.max()) + 1 if keys.size else 1
    pairs = np.unique(codes * width + keys)
    return np.asarray(np.bincount(pairs // width, minlength=size), dtype=np.int64)


def _limits(labelled: Series) -> np.ndarray:
    limit = column(labelled, "enforced_limit_w")
    return np.where(np.isfinite(limit), limit, column(labelled, "power_limit_w"))


def _cap_sensitivity(work: GpuWorkloads, reference_w: np.ndarray) -> np.ndarray:
    at_ref = at_limits(work, reference_w)
    lowered = at_limits(work, reference_w - CAP_STEP_W)
    slowdown = at_ref.throughput / np.maximum(lowered.throughput, 1e-9) - 1.0
    return np.where(np.isfinite(reference_w), 100.0 * slowdown, np.nan)


def _mean_by_code(codes: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    n = np.bincount(codes[ok], minlength=size)
    total = np.bincount(codes[ok], weights=values[ok], minlength=size)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)
