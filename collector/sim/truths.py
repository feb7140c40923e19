"""The twin's truths: several sets of the physics no telemetry shows, each consistent with the
real data, so an evaluation can tell a policy that holds on real GPUs from one that only
agrees with the twin.

What passive telemetry cannot show is how power and time respond to a clock the GPU has
not run at: the voltage curve above the clocks the data saw, and how sharply a kernel's
time switches from following the clock to following memory. The published sweeps and the
H100 data bound them; each truth picks values at one side of that range and refits the
rest of the GPU model to the same data (``docs/simulator.md`` has the figures):

- ``calibrated``: the best fit to the real H100 phases and the A100 SXM clock sweep;
- ``costly``: caps save least and cost most time — a flatter voltage curve near the top
  clock (power falls more slowly with the clock) and kernel time that follows the clock
  more closely;
- ``cheap``: caps save most and cost least — a steeper voltage curve and kernel time that
  switches to memory sooner.

The optimizer's own assumptions (:mod:`wattwise.optimizer.models.priors`) have another
functional form and constants fitted elsewhere; no truth equals them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, cast

from wattwise.collector.sim.models import GpuModel
from wattwise.errors import ConfigError

Overrides = Mapping[str, Mapping[str, float]]
"""GPU model key → GpuModel field → value."""

TRUTHS: Mapping[str, Overrides] = MappingProxyType(
    {
        "calibrated": {},
        # H100: refitted to the real H100 phases with its voltage at the knee held there;
        # A100: its curve is the published clock sweep's, only the kernels' time law moves
        # (docs/simulator.md, "Truths", gives the fits and their errors).
        "costly": {
            "H100_SXM": {
                "knee_voltage": 0.97,
                "knee_clock_rel": 0.655,
                "voltage_curvature": 1.27,
                "compute_power_w": 747.0,
                "memory_power_w": 248.0,
                "roofline_sharpness": 2.5,
            },
            "A100_SXM": {"roofline_sharpness": 2.5},
        },
        "cheap": {
            "H100_SXM": {
                "knee_voltage": 0.84,
                "knee_clock_rel": 0.532,
                "voltage_curvature": 1.24,
                "compute_power_w": 849.0,
                "memory_power_w": 260.0,
                "roofline_sharpness": 1.3,
            },
            "A100_SXM": {"roofline_sharpness": 1.3},
        },
    }
)
DEFAULT_TRUTH = "calibrated"


def check_truth(name: str) -> str:
    if name not in TRUTHS:
        raise ConfigError("truth", name, ", ".join(TRUTHS))
    return name


def under_truth(model: GpuModel, truth: str) -> GpuModel:
    """``model`` with the physics of ``truth``."""
    changes = TRUTHS[check_truth(truth)].get(model.key, {})
    # Only float fields are overridden; the Mapping's values are floats by construction.
    return replace(model, **cast(dict[str, Any], changes)) if changes else model
