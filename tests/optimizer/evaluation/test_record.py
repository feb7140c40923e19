"""The recorder the evaluation and the models' tests share: job readings become the
``gpu_job`` series the stores return, and a series is cut to a window only when asked."""

from __future__ import annotations

import numpy as np

from wattwise.collector.base import Reading
from wattwise.optimizer.evaluation.record import TelemetryRecorder

MINUTE_NS = 60 * 10**9


def _job_reading(host: str, job: str, second: int, power_w: float) -> Reading:
    tags = {"host": host, "gpu": "0", "job": job, "scheduler": "slurm"}
    tags.update(cluster="c1", zone="z1", rack="r1")
    return Reading("gpu_job", tags, {"power_w": power_w, "used_mem_bytes": 2e9}, second * 10**9)


def _recorded() -> TelemetryRecorder:
    rec = TelemetryRecorder()
    rec.add(
        [
            _job_reading("a", "slurm-7", 0, 300.0),
            _job_reading("b", "slurm-9", 10, 200.0),
            _job_reading("a", "slurm-7", 30, 500.0),
            _job_reading("a", "slurm-7", 60, 410.0),
        ]
    )
    return rec


def test_job_readings_become_the_gpu_job_series_per_job_and_minute() -> None:
    jobs = _recorded().series("gpu_job")
    assert list(jobs.tags["job"]) == ["slurm-7", "slurm-7", "slurm-9"]
    assert list(jobs.tags["host"]) == ["a", "a", "b"]
    assert jobs.time_ns.tolist() == [0, MINUTE_NS, 0]
    np.testing.assert_array_equal(jobs.values["power_w"], [400.0, 410.0, 200.0])
    np.testing.assert_array_equal(jobs.values["used_mem_bytes"], [2e9, 2e9, 2e9])


def test_series_without_bounds_holds_every_bucket_and_bounds_still_cut() -> None:
    rec = _recorded()
    assert len(rec.series("gpu_job")) == 3
    assert rec.series("gpu_job", MINUTE_NS).time_ns.tolist() == [MINUTE_NS]
    assert rec.series("gpu_job", None, MINUTE_NS).time_ns.tolist() == [0, 0]
    assert len(rec.series("gpu_job", 0, MINUTE_NS)) == 2
