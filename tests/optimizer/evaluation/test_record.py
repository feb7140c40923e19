"""The recorder the evaluation and the models' tests share: job readings become the
``gpu_job`` series the stores return, and a series is cut to a window only when asked."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

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


def _gpu_reading(second: int, power_w: float) -> Reading:
    tags = {"host": "a", "gpu": "0", "uuid": "GPU-0", "model": "H100"}
    tags.update(cluster="c1", zone="z1", rack="r1")
    return Reading("gpu", tags, {"power_w": power_w, "power_instant_w": power_w}, second * 10**9)


def test_power_spread_is_the_sample_standard_deviation_of_each_bucket() -> None:
    rec = TelemetryRecorder()
    minutes = {0: [75.0] * 60, 1: [300.0, 310.0, 290.0, 320.0], 2: [305.0]}
    rec.add(
        [
            _gpu_reading(60 * minute + second, power_w)
            for minute, powers in minutes.items()
            for second, power_w in enumerate(powers)
        ]
    )
    gpus = rec.series("gpu")
    assert gpus.time_ns.tolist() == [0, MINUTE_NS, 2 * MINUTE_NS]
    equal, four, single = gpus.values["power_sd_w"].tolist()
    assert equal == 0.0
    assert four == pytest.approx(statistics.stdev(minutes[1]), rel=1e-12)
    assert four == pytest.approx(12.909944487358056, rel=1e-12)  # n − 1: n would give 11.18
    assert math.isnan(single)  # as InfluxDB: one sample has no spread
    np.testing.assert_array_equal(gpus.values["power_w"], [75.0, 305.0, 305.0])
    np.testing.assert_array_equal(gpus.values["power_peak_w"], [75.0, 320.0, 305.0])
