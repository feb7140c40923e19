"""Per GPU model constants the telemetry cannot separate, with where each comes from.

Passive telemetry sees total power, never its split into static, leakage,
memory and clock-dependent parts. The H100 values were measured on the real
H100 in ``tests/data/h100`` (idle, context, leakage in the cooldown, the 1 GiB
copy for memory power, the capped matmuls for the voltage floor — see
docs/simulator.md's calibration table). No telemetry exists here for the A100
and L40S: their values are the H100's scaled by board power, with published
clocks and limits. ``v0`` is refitted from the fleet's own data once caps vary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class CapPrior:
    """Static and memory power, leakage, voltage floor and clocks of one GPU model."""

    static_w: float
    """Idle plus context power with a job resident, at ``leak_ref_temp_c``."""
    leak_w_per_c: float
    leak_ref_temp_c: float
    memory_w: float
    """Memory power at 100 % memory utilization."""
    voltage_floor: float
    top_clock_mhz: float
    min_clock_mhz: float
    compute_w: float = 727.0
    """Clock-dependent power at the top clock with every SM active the whole time (the H100's
    ``K_c``): divides a work's ``D`` into its SM activity."""


H100 = CapPrior(
    static_w=77.0 + 46.0,
    leak_w_per_c=0.9,
    leak_ref_temp_c=38.0,
    memory_w=263.0,
    voltage_floor=0.9,
    top_clock_mhz=1980.0,
    min_clock_mhz=345.0,
    compute_w=727.0,
)


def _scaled(board_w: float, idle_w: float, top_mhz: float, min_mhz: float) -> CapPrior:
    s = board_w / 700.0
    return replace(
        H100,
        static_w=idle_w + 46.0 * s,
        leak_w_per_c=H100.leak_w_per_c * s,
        memory_w=H100.memory_w * s,
        compute_w=H100.compute_w * s,
        top_clock_mhz=top_mhz,
        min_clock_mhz=min_mhz,
    )


PRIORS: tuple[tuple[str, CapPrior], ...] = (
    ("H100", H100),
    ("A100", _scaled(400.0, 55.0, 1410.0, 210.0)),
    ("L40S", _scaled(350.0, 35.0, 2520.0, 210.0)),
)
"""Matched by substring of the product name NVML reports (``NVIDIA H100 80GB HBM3``)."""


def prior_for(gpu_model: str) -> CapPrior | None:
    """The constants for a product name, or None when wattwise has none for it."""
    for key, prior in PRIORS:
        if key in gpu_model:
            return prior
    return None
