"""The simulated fleet: a seeded, calibrated physical twin of GPU nodes and cooling zones.

``SimFleet(spec, clock)`` is a collector source (``name = "sim"``); see
``docs/simulator.md`` for the model and its calibration against a real H100.
"""

from wattwise.collector.sim.fleet import SimFleet
from wattwise.collector.sim.models import A100_SXM, GPU_MODELS, H100_SXM, L40S, GpuModel, gpu_model
from wattwise.collector.sim.spec import FleetSpec, NodeSpec
from wattwise.collector.sim.truth import GroundTruth
from wattwise.collector.sim.views import FleetView, GpuView, NodeView
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS, WorkloadSpec

__all__ = [
    "A100_SXM",
    "DEFAULT_WORKLOADS",
    "GPU_MODELS",
    "H100_SXM",
    "L40S",
    "FleetSpec",
    "FleetView",
    "GpuModel",
    "GpuView",
    "GroundTruth",
    "NodeSpec",
    "NodeView",
    "SimFleet",
    "WorkloadSpec",
    "gpu_model",
]
