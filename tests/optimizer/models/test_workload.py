"""Workload profiles per job and per class on the twin's jobs, against the work it ran."""

from __future__ import annotations

import numpy as np

from tests.optimizer.twin import walked_setpoint
from wattwise.optimizer.models.cap_response import fit_cap_models
from wattwise.optimizer.models.workload import job_profiles


def _truth_by_job() -> dict[str, tuple[float, float]]:
    """(true μ, share of job rows) per job id, from the twin's job table at the end."""
    data = walked_setpoint()
    fleet = data.fleet
    jobs = data.jobs
    last = jobs.time_ns == jobs.time_ns.max()
    out = {}
    for host, gpu, job in zip(
        jobs.tags["host"][last], jobs.tags["gpu"][last], jobs.tags["job"][last], strict=True
    ):
        i = fleet.gpu_index(str(host), int(gpu))
        out[str(job)] = (float(fleet.jobs.memory_bound[i]), float(fleet.jobs.duty[i]))
    return out


def test_job_profiles_separate_memory_bound_from_compute_bound_work() -> None:
    data = walked_setpoint()
    profiles = job_profiles(data.jobs, data.gpus, fit_cap_models(data.gpus))
    truth = _truth_by_job()
    seen = [(profiles[j], mu, duty) for j, (mu, duty) in truth.items() if j in profiles]
    assert len(seen) >= 10
    compute = [p for p, mu, _ in seen if mu <= 0.1]
    memory = [p for p, mu, _ in seen if mu >= 0.9]
    assert compute and memory
    assert max(p.boundness for p in compute) < min(p.boundness for p in memory)
    assert min(p.cap_sensitivity_pct_per_100w for p in compute) > max(
        p.cap_sensitivity_pct_per_100w for p in memory
    )
    for p, _, duty in seen:
        assert p.kind == "job" and p.gpus == 1 and p.samples >= 1
        assert 0.0 <= p.duty <= 1.0 and p.mean_power_w > 100.0
        assert abs(p.duty - duty) <= 0.2


def test_class_profiles_pool_the_jobs_an_operator_labels() -> None:
    data = walked_setpoint()
    truth = _truth_by_job()
    classes = {j: ("memory" if mu >= 0.9 else "other") for j, (mu, _) in truth.items()}
    models = fit_cap_models(data.gpus)
    by_job = job_profiles(data.jobs, data.gpus, models)
    by_class = job_profiles(data.jobs, data.gpus, models, classes)
    assert set(by_class) == {"memory", "other"}
    memory = by_class["memory"]
    assert memory.kind == "class"
    assert memory.gpus == sum(1 for j, c in classes.items() if c == "memory" and j in by_job)
    members = [by_job[j].boundness for j, c in classes.items() if c == "memory" and j in by_job]
    assert min(members) - 0.05 <= memory.boundness <= max(members) + 0.05
    assert np.isfinite(memory.cap_sensitivity_pct_per_100w)
