"""Predicted power and throughput of each GPU's work under a power limit (vectorised)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_power import phi, phi_inverse
from wattwise.optimizer.models.cap_response import CLOCK_STEP_MHZ, GpuWorkloads
from wattwise.optimizer.telemetry import Floats


@dataclass(frozen=True)
class AtLimit:
    """Arrays shaped like the limits asked about (GPUs × candidates, or GPUs)."""

    power_w: Floats
    clock_rel: Floats
    throughput: Floats
    """Work rate relative to the same work at the top clock, unthrottled."""


def at_limits(w: GpuWorkloads, limit_w: Floats) -> AtLimit:
    """Where each GPU's work would run under ``limit_w`` (shape (G,) or (G, K)).

    The power controller picks the highest clock step whose power meets the limit;
    below the lowest clock the GPU stalls, losing busy time in proportion.
    """
    limit = np.asarray(limit_w, dtype=np.float64)
    col = (slice(None), None) if limit.ndim == 2 else (slice(None),)
    base, dyn = w.base_w[col], w.dynamic_w[col]
    v0, top = w.voltage_floor[col], w.top_clock_mhz[col]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(dyn > 0, (limit - base) / dyn, 1.0)
    x = phi_inverse(np.clip(share, 0.0, 1.0), v0)
    x = np.floor(x * top / CLOCK_STEP_MHZ + 1e-9) * CLOCK_STEP_MHZ / top
    x = np.maximum(x, w.min_clock_rel[col])
    work_w = np.maximum(base - w.static_w[col], 0.0) + dyn * phi(x, v0)
    static = w.static_w[col] + 0.0 * limit
    stall = np.clip((limit - static) / np.maximum(work_w, 1e-9), 0.0, 1.0)
    mu = w.boundness[col]
    rate = stall / ((1.0 - mu) / np.maximum(x, 1e-6) + mu)
    return AtLimit(power_w=static + work_w * stall, clock_rel=x + 0.0 * limit, throughput=rate)
