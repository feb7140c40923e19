from __future__ import annotations

from tests.collector.sim.conftest import COMPUTE_BOUND
from wattwise.clock import ManualClock
from wattwise.collector.schema import GPU_JOB
from wattwise.collector.sim import SimFleet
from wattwise.collector.sim.views import JobView


def test_job_readings_follow_the_schema_and_cover_only_gpus_with_jobs(
    quiet_node: SimFleet, clock: ManualClock
) -> None:
    quiet_node.start_job("sim-r01-n01", 2, COMPUTE_BOUND)
    view = JobView(quiet_node)
    clock.advance(1.0)
    (reading,) = view.read()
    assert reading.measurement == "gpu_job"
    assert set(reading.tags) == set(GPU_JOB.tags)
    assert reading.tags["gpu"] == "2" and reading.tags["scheduler"] == "slurm"
    for name, value in reading.present_fields().items():
        assert type(value) is GPU_JOB.fields[name].kind, name
    assert reading.fields["power_w"] == quiet_node.trailing_power_w()[2]


def test_a_new_job_on_the_same_gpu_gets_a_new_id(quiet_node: SimFleet, clock: ManualClock) -> None:
    view = JobView(quiet_node)
    quiet_node.start_job("sim-r01-n01", 0, COMPUTE_BOUND, length_s=100.0)
    clock.advance(1.0)
    first = view.read()[0].tags["job"]
    clock.advance(1.0)
    assert view.read()[0].tags["job"] == first
    quiet_node.stop_job("sim-r01-n01", 0)
    quiet_node.start_job("sim-r01-n01", 0, COMPUTE_BOUND, length_s=100.0)
    clock.advance(1.0)
    assert view.read()[0].tags["job"] != first
