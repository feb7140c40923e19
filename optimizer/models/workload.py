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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.telemetry import Series

from .cap_predict import at_limits
from .cap_response import CapResponseModel, GpuWorkloads, estimate_workloads
from .common import column, factorize, group_codes, join_column, tag

CAP_STEP_W = 100.0
UNLIMITED_WINDOW_S = 1e9
"""~30 years: profiles cover the whole window, not only the last minutes of a GPU's work."""


@dataclass(frozen=True)
class WorkloadProfile:
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


def job_profiles(
    jobs: Series,
    gpus: Series,
    models: Mapping[str, CapResponseModel],
    classes: Mapping[str, str] | None = None,
) -> dict[str, WorkloadProfile]:
    """Profiles per job, or per class when ``classes`` maps job ids to class labels (jobs
    without a class are then left out)."""
    label = tag(jobs, "job")
    kind = "job"
    if classes is not None:
        codes, ids = factorize(label)
        label = np.array([classes.get(str(j), "") for j in ids], dtype=object)[codes]
        kind = "class"
    keep = label != ""
    labelled = _gpu_rows_of_jobs(jobs, gpus, keep, label)
    if len(labelled) == 0:
        return {}
    work = estimate_workloads(
        labelled, dict(models), recent_s=UNLIMITED_WINDOW_S, since_change=False
    )
    codes, names = factorize(tag(labelled, "host"))
    where = np.searchsorted(names.astype(str), work.host.astype(str))
    reference = _mean_by_code(codes, len(names), _limits(labelled))[where]
    sensitivity = _cap_sensitivity(work, reference)
    duty = _mean_by_code(codes, len(names), column(labelled, "util_gpu_pct") / 100.0)[where]
    power = _mean_by_code(codes, len(names), column(labelled, "power_w"))[where]
    gpus_per = _distinct_gpus(jobs, keep, label, names)[where]
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


def _gpu_rows_of_jobs(jobs: Series, gpus: Series, keep: np.ndarray, label: np.ndarray) -> Series:
    """The ``gpu_series`` rows a job held, with tag ``host`` replaced by the job's label (so
    per-GPU estimators aggregate per label)."""
    marker = Series(
        jobs.time_ns[keep],
        {"host": tag(jobs, "host")[keep], "gpu": tag(jobs, "gpu")[keep]},
        {"row": np.flatnonzero(keep).astype(np.float64)},
    )
    row = join_column(gpus, marker, "row", on=("host", "gpu"))
    held = np.isfinite(row)
    job_row = row[held].astype(np.int64)
    return Series(
        gpus.time_ns[held],
        {
            "host": label[job_row],
            "gpu": np.full(int(held.sum()), "", dtype=object),
            "model": tag(gpus, "model", "unknown")[held],
        },
        {name: values[held] for name, values in gpus.values.items()},
    )


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


def _distinct_gpus(
    jobs: Series, keep: np.ndarray, label: np.ndarray, names: np.ndarray
) -> np.ndarray:
    """How many GPUs (distinct host and GPU) each of ``names`` ran on."""
    triple = group_codes(label[keep], tag(jobs, "host")[keep], tag(jobs, "gpu")[keep])
    first = np.zeros(int(triple.max()) + 1 if triple.size else 0, dtype=np.int64)
    first[triple[::-1]] = np.arange(triple.size)[::-1]
    label_of_triple = label[keep][first].astype(str)
    sorted_names = names.astype(str)
    where = np.clip(np.searchsorted(sorted_names, label_of_triple), 0, max(len(names) - 1, 0))
    known = sorted_names[where] == label_of_triple
    return np.bincount(where[known], minlength=len(names))
