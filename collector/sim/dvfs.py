"""Dynamic voltage and frequency scaling: the clock a GPU runs at and the power it draws.

While its kernels run (a share ``busy`` of the time) a GPU draws its burst power, between
them its static power::

    static = P_idle + P_ctx·[job] + leak·(T_die − T_ref)
    burst  = static + c · K_c · φ(f/f_max) + m · K_m
    φ(x)   = x · V(x)²,  V = v_k below the knee x_k, v_k + (1 − v_k)·s^γ above it

``c`` is the SM activity of the kernels and ``m`` their memory activity; ``s`` runs from 0
at the knee to 1 at the top clock. Below the knee the voltage is at its floor and power
falls in proportion to the clock; above it, faster (the published clock sweeps).

The power controller acts within the second, so it sees bursts, not only the mean: it
holds ``α·burst + (1 − α)·mean`` under the enforced limit, ``α`` being how much of its
bursts a workload shows the controller (kernels of tens of ms: most; of a few ms: little).
A thermal controller caps the clock near the slowdown temperature. When even the lowest
clock exceeds the limit, the GPU stalls (``busy`` shrinks).

Time per unit of work at relative clock ``x`` is the kernels' soft roofline
``‖((1 − μ)/x, μ)‖_p``, normalised to 1 at the top clock (``μ`` the memory-boundness).

These forms and every parameter are the twin's own: the optimizer assumes other shapes
and learns its constants elsewhere, so an evaluation can catch its assumptions failing.
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
    knee_clock_rel: Floats
    knee_voltage: Floats
    voltage_curvature: Floats
    roofline_sharpness: Floats
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
    burst_power_w: Floats
    """Power while the kernels run (what an instantaneous reading inside a burst shows)."""
    static_power_w: Floats
    """Power between kernels."""


def phi(x: Floats, p: GpuParams) -> Floats:
    """Relative dynamic power at relative clock ``x`` (1 at the maximum clock)."""
    span = np.maximum(1.0 - p.knee_clock_rel, 1e-9)
    rise = np.clip((x - p.knee_clock_rel) / span, 0.0, 1.0) ** p.voltage_curvature
    v = p.knee_voltage + (1.0 - p.knee_voltage) * rise
    return np.asarray(x * v * v, dtype=np.float64)


def phi_inverse(y: Floats, p: GpuParams) -> Floats:
    """The relative clock whose φ is ``y`` (clipped to [0, 1]), by bisection: φ increases."""
    target = np.clip(y, 0.0, 1.0)
    low = np.zeros(np.broadcast(target, p.knee_voltage).shape)
    high = np.ones_like(low)
    for _ in range(24):
        mid = 0.5 * (low + high)
        below = phi(mid, p) < target
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return np.asarray(0.5 * (low + high), dtype=np.float64)


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
    burst_enforcement: Floats,
    temp_c: Floats,
    limit_w: Floats,
    locked_clock_mhz: Floats | float = np.inf,
) -> OperatingPoint:
    """The clock, power and clock-event reasons of every GPU for the coming sub-step
    (``locked_clock_mhz``: a ceiling set as ``nvmlDeviceSetGpuLockedClocks`` would)."""
    static_w = static_power_w(p, has_job, temp_c)
    memory_w = memory * p.memory_power_w
    compute_full_w = compute * p.compute_power_w
    # The share of a burst the controller holds the limit against (1: the whole burst).
    enforced = burst_enforcement + (1.0 - burst_enforcement) * busy
    with np.errstate(divide="ignore", invalid="ignore"):
        headroom = (limit_w - static_w) / np.maximum(enforced, 1e-9) - memory_w
        share = np.where(compute_full_w > 0, headroom / compute_full_w, 1.0)
    x_power = np.where(share >= 1.0, 1.0, phi_inverse(np.clip(share, 0.0, 1.0), p))
    x_thermal = thermal_clock_cap(p, temp_c)
    x_min = p.min_sm_clock_mhz / p.max_sm_clock_mhz
    x_locked = np.minimum(np.asarray(locked_clock_mhz) / p.max_sm_clock_mhz, 1.0)
    x = np.maximum(np.minimum(np.minimum(x_power, x_thermal), x_locked), x_min)
    steps = np.floor(x * p.max_sm_clock_mhz / CLOCK_STEP_MHZ + 1e-9)
    clock_mhz = np.maximum(steps * CLOCK_STEP_MHZ, p.min_sm_clock_mhz)
    clock_mhz = np.where(has_job, clock_mhz, p.idle_sm_clock_mhz)
    burst_w = compute_full_w * phi(clock_mhz / p.max_sm_clock_mhz, p) + memory_w
    burst_w = np.where(busy > 0, burst_w, 0.0)
    # Past the lowest clock the GPU can only stall: less busy time, less power.
    with np.errstate(divide="ignore", invalid="ignore"):
        stall = np.clip((limit_w - static_w) / np.maximum(enforced * burst_w, 1e-9), 0.0, 1.0)
    busy_eff = busy * stall
    power_w = static_w + busy_eff * burst_w
    reasons = np.where(has_job, 0, REASON_IDLE)
    capped = has_job & (compute_full_w > 0) & (x_power < np.minimum(1.0, x_thermal))
    reasons = reasons | np.where(capped | (stall < 1.0), REASON_SW_POWER_CAP, 0)
    hot = has_job & (x_thermal < 1.0) & (x_thermal <= x_power)
    reasons = reasons | np.where(hot, REASON_SW_THERMAL, 0)
    return OperatingPoint(
        sm_clock_mhz=clock_mhz,
        power_w=power_w,
        busy=busy_eff,
        memory_power_w=busy_eff * memory_w,
        reasons=reasons.astype(np.int64),
        burst_power_w=static_w + burst_w * np.minimum(stall / np.maximum(enforced, 1e-9), 1.0),
        static_power_w=static_w,
    )


def throughput(clock_rel: Floats, memory_bound: Floats, sharpness: Floats) -> Floats:
    """Work rate relative to the maximum clock: the inverse of the kernels' time
    ``‖((1 − μ)/x, μ)‖_p`` over its value at the top clock."""
    compute = (1.0 - memory_bound) / np.maximum(clock_rel, 1e-6)
    at_top = ((1.0 - memory_bound) ** sharpness + memory_bound**sharpness) ** (1.0 / sharpness)
    now = (compute**sharpness + memory_bound**sharpness) ** (1.0 / sharpness)
    return np.asarray(at_top / now, dtype=np.float64)
