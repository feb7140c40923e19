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
BLOCK_CELLS = 1 << 20
"""GPU × candidate limit × demand quantile cells worked at once: the clock's bisection holds
a few arrays of them, and the caps' whole grid at 10,000 GPUs (about 60 limits × 8
quantiles each) held some 300 MiB at a time."""
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
    ``cautious``, at the low end of its μ range, where a limit costs most time. A large
    grid is worked a block of GPUs at a time (:data:`BLOCK_CELLS`)."""
    limit = np.asarray(limit_w, dtype=np.float64)
    per_gpu = BURST_QUANTILES * (limit.shape[1] if limit.ndim == 2 else 1)
    rows = max(BLOCK_CELLS // per_gpu, 1)
    if len(limit) <= rows:
        return _at_limits(w, limit, cautious)
    blocks = [
        _at_limits(w.take(np.arange(b, min(b + rows, len(limit)))), limit[b : b + rows], cautious)
        for b in range(0, len(limit), rows)
    ]
    return AtLimit(
        power_w=np.concatenate([b.power_w for b in blocks]),
        clock_rel=np.concatenate([b.clock_rel for b in blocks]),
        throughput=np.concatenate([b.throughput for b in blocks]),
    )


def _at_limits(w: GpuWorkloads, limit: Floats, cautious: bool) -> AtLimit:
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
