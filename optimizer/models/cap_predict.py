"""Predicted power and throughput of each GPU's work under a power limit (vectorised).

Each GPU's kernels draw their demand (:attr:`GpuWorkloads.burst_w`) while they run and the
gap power between them; the limit is held against the bursts (:mod:`.limit_response`), so
work whose mean is far below a limit is still slowed when its bursts are above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.models.limit_response import duty_cycled, respond, spread_quantiles
from wattwise.optimizer.telemetry import Floats

BURST_QUANTILES = 8
BURST_SPREAD = 0.05
"""Kernels of one job draw a little more or less from one to the next; the spread keeps a
limit just under the demand from looking free."""


@dataclass(frozen=True)
class AtLimit:
    """Arrays shaped like the limits asked about (GPUs × candidates, or GPUs)."""

    power_w: Floats
    """Mean power over the duty cycle."""
    clock_rel: Floats
    throughput: Floats
    """Work rate relative to the same work at the top clock, unthrottled."""

    @property
    def energy_per_work(self) -> Floats:
        """Relative: compare two of them (the duty cycle's share cancels)."""
        return np.asarray(self.power_w / np.maximum(self.throughput, 1e-9), dtype=np.float64)


def at_limits(w: GpuWorkloads, limit_w: Floats, *, cautious: bool = False) -> AtLimit:
    """Where each GPU's work would run under ``limit_w`` (shape (G,) or (G, K)); with
    ``cautious``, at the low end of its μ range, where a limit costs most time."""
    limit = np.asarray(limit_w, dtype=np.float64)
    grid = limit.ndim == 2
    col = (slice(None), None, None) if grid else (slice(None), None)
    demand = w.burst_cautious_w if cautious else w.burst_w
    bursts = spread_quantiles(demand, BURST_SPREAD, BURST_QUANTILES)
    if grid:
        bursts = bursts[:, None, :]
    mu = w.boundness_low if cautious else w.boundness
    curve = w.cautious_curve if cautious else w.curve
    knee, volts = np.asarray(curve.knee_rel)[col], np.asarray(curve.knee_voltage)[col]
    r = respond(
        bursts,
        static_w=(w.gap_w + w.memory_w)[col],
        boundness=mu[col],
        curve=type(curve)(knee, volts),  # type: ignore[arg-type]
        min_clock_rel=w.min_clock_rel[col],
        limit_w=limit[..., None],
        idle_w=w.gap_w[col],
    )
    cycle = duty_cycled(r, w.gap_w[col[:-1]], w.util_gpu[col[:-1]])
    return AtLimit(
        power_w=cycle.power_w,
        clock_rel=r.clock_rel,
        throughput=np.asarray(1.0 / np.maximum(r.time_per_work, 1e-9), dtype=np.float64),
    )
