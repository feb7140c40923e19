"""Dynamic voltage and frequency scaling: the clock a GPU runs at and the power it draws.

Power of one GPU, averaged over the sub-second kernel pattern::

    P = P_idle + P_ctx·[job] + leak·(T_die − T_ref)
        + busy · (c · K_c · φ(f/f_max) + m · K_m)
    φ(x) = x · (v0 + (1 − v0)·x)²       (dynamic power f·V² with V linear in f)

``busy`` is the share of time kernels run, ``c`` the SM activity of the kernels
and ``m`` their memory activity. The power controller lowers the SM clock until
``P`` meets the enforced limit; a thermal controller caps the clock near the
slowdown temperature. When even the lowest clock exceeds the limit, the GPU
stalls (``busy`` shrinks), so true power never exceeds the enforced limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from wattwise.collector.sim.models import GpuModel

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

REASON_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_SW_THERMAL = 0x20
CLOCK_STEP_MHZ = 15.0
"""NVIDIA GPUs move their SM clock in steps of 15 MHz."""
THERMAL_ONSET_BELOW_C = 2.0
"""The thermal controller starts capping this far below the slowdown temperature."""
THERMAL_CAP_PER_C = 0.08
"""Share of the maximum clock the thermal controller removes per °C past the onset."""


@dataclass(frozen=True, slots=True)
class GpuParams:
    """Every model parameter as an array over all GPUs of the fleet (vectorised physics)."""

    idle_power_w: Floats
    context_power_w: Floats
    compute_power_w: Floats
    memory_power_w: Floats
    leak_w_per_c: Floats
    leak_ref_temp_c: Floats
    voltage_floor: Floats
    max_sm_clock_mhz: Floats
    min_sm_clock_mhz: Floats
    idle_sm_clock_mhz: Floats
    slowdown_temp_c: Floats
    r_die_c_per_w: Floats
    r_sink_c_per_w: Floats
    tau_die_s: Floats
    tau_sink_s: Floats
    mem_temp_offset_c: Floats
    mem_temp_c_per_w: Floats
    mem_temp_c_per_mem_w: Floats

    @classmethod
    def of(cls, models: Sequence[GpuModel]) -> GpuParams:
        """Gather the parameters of one model per GPU into arrays."""
        names = cls.__dataclass_fields__
        return cls(
            **{n: np.array([getattr(m, n) for m in models], dtype=np.float64) for n in names}
        )


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Where each GPU runs during one sub-step."""

    sm_clock_mhz: Floats
    power_w: Floats
    busy: Floats
    """Share of time kernels ran after any stall the power limit forced."""
    memory_power_w: Floats
    reasons: Ints


def phi(x: Floats, v0: Floats) -> Floats:
    """Relative dynamic power at relative clock ``x`` (1 at the maximum clock)."""
    v = v0 + (1.0 - v0) * x
    return x * v * v


def phi_inverse(y: Floats, v0: Floats) -> Floats:
    """The relative clock whose φ is ``y`` (``y`` in [0, 1]).

    φ is increasing and convex on [0, 1] and x³ ≤ φ(x) ≤ x, so the root lies
    at or below ∛y; Newton's method started there approaches it from above
    without overshooting.
    """
    x = np.cbrt(y)
    for _ in range(8):
        v = v0 + (1.0 - v0) * x
        slope = v * v + 2.0 * x * (1.0 - v0) * v
        x = x - (x * v * v - y) / np.maximum(slope, 1e-12)
    return np.clip(x, 0.0, 1.0)


def static_power_w(p: GpuParams, has_job: NDArray[np.bool_], temp_c: Floats) -> Floats:
    """Power that does not depend on the work: idle, context and leakage."""
    leak = p.leak_w_per_c * (temp_c - p.leak_ref_temp_c)
    return p.idle_power_w + np.where(has_job, p.context_power_w, 0.0) + leak


def thermal_clock_cap(p: GpuParams, temp_c: Floats) -> Floats:
    """Relative clock the thermal controller allows at die temperature ``temp_c``."""
    over_c = temp_c - (p.slowdown_temp_c - THERMAL_ONSET_BELOW_C)
    return np.clip(1.0 - THERMAL_CAP_PER_C * over_c, 0.0, 1.0)


def solve(
    p: GpuParams,
    *,
    has_job: NDArray[np.bool_],
    busy: Floats,
    compute: Floats,
    memory: Floats,
    temp_c: Floats,
    limit_w: Floats,
) -> OperatingPoint:
    """The clock, power and clock-event reasons of every GPU for the coming sub-step."""
    static_w = static_power_w(p, has_job, temp_c)
    memory_w = busy * memory * p.memory_power_w
    compute_full_w = busy * compute * p.compute_power_w
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(compute_full_w > 0, (limit_w - static_w - memory_w) / compute_full_w, 1.0)
    x_power = phi_inverse(np.clip(share, 0.0, 1.0), p.voltage_floor)
    x_thermal = thermal_clock_cap(p, temp_c)
    x_min = p.min_sm_clock_mhz / p.max_sm_clock_mhz
    x = np.maximum(np.minimum(x_power, x_thermal), x_min)
    steps = np.floor(x * p.max_sm_clock_mhz / CLOCK_STEP_MHZ + 1e-9)
    clock_mhz = np.maximum(steps * CLOCK_STEP_MHZ, p.min_sm_clock_mhz)
    clock_mhz = np.where(has_job, clock_mhz, p.idle_sm_clock_mhz)
    work_w = compute_full_w * phi(clock_mhz / p.max_sm_clock_mhz, p.voltage_floor) + memory_w
    # Past the lowest clock the GPU can only stall: less busy time, less power.
    stall = np.clip((limit_w - static_w) / np.maximum(work_w, 1e-9), 0.0, 1.0)
    busy_eff = busy * stall
    power_w = static_w + work_w * stall
    reasons = np.where(has_job, 0, REASON_IDLE)
    capped = has_job & (compute_full_w > 0) & (x_power < np.minimum(1.0, x_thermal))
    reasons = reasons | np.where(capped | (stall < 1.0), REASON_SW_POWER_CAP, 0)
    hot = has_job & (x_thermal < 1.0) & (x_thermal <= x_power)
    reasons = reasons | np.where(hot, REASON_SW_THERMAL, 0)
    return OperatingPoint(
        sm_clock_mhz=clock_mhz,
        power_w=power_w,
        busy=busy_eff,
        memory_power_w=memory_w * stall,
        reasons=reasons.astype(np.int64),
    )


def throughput(clock_rel: Floats, memory_bound: Floats) -> Floats:
    """Work rate relative to the maximum clock: follows the clock when compute-bound, flat
    when memory-bound (time per unit of work = (1 − μ)/x + μ)."""
    return 1.0 / ((1.0 - memory_bound) / np.maximum(clock_rel, 1e-6) + memory_bound)
