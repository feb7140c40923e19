"""The simulated fleet: a seeded, calibrated physical twin of GPU nodes and cooling zones.

``SimFleet(spec, clock)`` is a collector source (``name = "sim"``); see
``docs/simulator.md`` for the model and its calibration against a real H100.
"""

from .fleet import SimFleet
from .models import A100_SXM, GPU_MODELS, H100_SXM, L40S, GpuModel, gpu_model
from .spec import FleetSpec, NodeSpec
from .truth import GroundTruth
from .views import FleetView, GpuView, NodeView
from .workload import DEFAULT_WORKLOADS, WorkloadSpec

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
