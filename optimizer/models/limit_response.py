"""How work responds to a power limit or a locked clock, from the distribution of its power.

A GPU's power controller holds the **instantaneous** draw under the limit within a
second, so what a limit costs depends on the work's bursts, not on its mean: an
inference server averaging 270 W whose kernels draw 690 W is slowed by a 300 W
limit during every burst. The work is therefore described by its demand — the
power it would draw at the top clock, uncapped — as equal-work quantiles
(``demand_w[..., q]``), and each quantile is run through the controller:

- demand at or under the limit runs at the top clock (or a locked clock);
- above it the clock drops until ``S + (d − S)·φ(x)`` meets the limit, ``S`` being
  the power that does not scale with the SM clock (idle, leakage, memory);
- below the lowest clock the GPU stalls: it runs only part of the time.

Power as a function of the relative clock follows dynamic power ``f·V²`` with the
voltage flat below a knee and rising linearly to the top clock above it
(:class:`ClockCurve`): below the knee power falls in proportion to the clock, above
it about as ``f^1.8–2.5`` (the published A100 clock sweeps show both regions).
Time per unit of work at relative clock ``x`` is ``(1 − μ)/x + μ``, ``μ`` the work's
memory-boundness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.telemetry import Floats

BISECTION_STEPS = 30
"""φ⁻¹ to within 1e-9 of the clock range: far below the 15 MHz steps a GPU moves in."""


@dataclass(frozen=True)
class ClockCurve:
    """Relative dynamic power ``φ(x) = x·V(x)²`` with ``V = knee_voltage`` up to ``knee_rel``,
    then linear to 1 at the top clock (``φ(1) = 1``)."""

    knee_rel: float
    """Relative clock below which the voltage stays at its floor (or one per GPU, an array)."""
    knee_voltage: float
    """Voltage at and below the knee, relative to the voltage at the top clock."""

    def phi(self, x: Floats) -> Floats:
        slope = (1.0 - self.knee_voltage) / np.maximum(1.0 - self.knee_rel, 1e-9)
        volts = self.knee_voltage + slope * np.maximum(np.asarray(x) - self.knee_rel, 0.0)
        return np.asarray(x * volts * volts, dtype=np.float64)

    def phi_inverse(self, y: Floats) -> Floats:
        """The relative clock whose φ is ``y`` (clipped to [0, 1]); φ is increasing."""
        target = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
        low, high = np.zeros_like(target), np.ones_like(target)
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (low + high)
            below = self.phi(mid) < target
            low = np.where(below, mid, low)
            high = np.where(below, high, mid)
        return np.asarray(0.5 * (low + high), dtype=np.float64)

    def exponent_at_top(self) -> float:
        """d ln φ / d ln x at the top clock: how steeply power falls with the first MHz."""
        if self.knee_rel >= 1.0:
            return 1.0
        return 1.0 + 2.0 * (1.0 - self.knee_voltage) / (1.0 - self.knee_rel)


@dataclass(frozen=True)
class Response:
    """Per unit of work, relative to nothing: compare two of them for a relative figure."""

    time_per_work: Floats
    """Mean time factor: 1 at the top clock for compute-bound work, uncapped."""
    energy_per_work: Floats
    """Mean power × time factor (W·time-factor)."""
    clock_rel: Floats
    """Work-weighted mean relative clock."""

    @property
    def power_w(self) -> Floats:
        return np.asarray(self.energy_per_work / self.time_per_work, dtype=np.float64)


def respond(
    demand_w: Floats,
    *,
    static_w: Floats | float,
    boundness: Floats | float,
    curve: ClockCurve,
    min_clock_rel: Floats | float,
    limit_w: Floats | float,
    clock_cap_rel: Floats | float = 1.0,
    idle_w: Floats | float | None = None,
) -> Response:
    """Run work described by ``demand_w`` (…, Q equal-work quantiles of demand at the top
    clock) under ``limit_w`` and a clock ceiling; every other argument broadcasts against
    ``demand_w[..., :1]``. Returns means over the quantiles (shape ``demand_w.shape[:-1]``).

    ``static_w`` does not scale with the clock; of it, all but ``idle_w`` (default: all of
    it) is the work's own — memory traffic — and stops when the GPU stalls."""
    demand = np.asarray(demand_w, dtype=np.float64)
    limit = np.asarray(limit_w, dtype=np.float64)
    mu = np.asarray(boundness, dtype=np.float64)
    # Demand under the static power (the gaps between kernels) has nothing to scale.
    base = np.minimum(demand, np.asarray(static_w, dtype=np.float64))
    dynamic = demand - base
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(dynamic > 0, (limit - base) / dynamic, 1.0)
    x = np.where(demand <= limit, 1.0, curve.phi_inverse(share))
    x = np.maximum(np.minimum(x, clock_cap_rel), min_clock_rel)
    # Below the lowest clock the GPU runs part of the time: the work's power (its clock-
    # dependent part and its memory traffic) only while it runs, the idle power always.
    floor = base if idle_w is None else np.minimum(base, np.asarray(idle_w, dtype=np.float64))
    work_w = base - floor + dynamic * curve.phi(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        running = np.where(work_w > 0, np.clip((limit - floor) / work_w, 0.0, 1.0), 1.0)
    power = floor + work_w * running
    time = ((1.0 - mu) / np.maximum(x, 1e-6) + mu) / np.maximum(running, 1e-3)
    return Response(
        time_per_work=np.asarray(time.mean(axis=-1), dtype=np.float64),
        energy_per_work=np.asarray((power * time).mean(axis=-1), dtype=np.float64),
        clock_rel=np.asarray(x.mean(axis=-1), dtype=np.float64),
    )


def spread_quantiles(center_w: Floats, spread: Floats | float, count: int) -> Floats:
    """``count`` equal-work quantiles of a demand spread evenly over ``center·(1 ± spread)``
    (shape ``center.shape + (count,)``): work whose draw within the second is unknown."""
    z = (np.arange(count) + 0.5) / count * 2.0 - 1.0
    center = np.asarray(center_w, dtype=np.float64)[..., None]
    return np.asarray(center * (1.0 + np.asarray(spread)[..., None] * z), dtype=np.float64)


def duty_cycled(bursts: Response, gap_w: Floats, busy: Floats) -> Response:
    """Work done only in bursts that fill a share ``busy`` of the time, ``gap_w`` drawn between
    them (the share held as the bursts slow, as a job's duty cycle is): per unit of work, the
    wall time and the whole cycle's energy. A limit costs such work what it costs its
    bursts, however far its mean is below the limit."""
    u = np.clip(np.asarray(busy, dtype=np.float64), 1e-3, 1.0)
    power = (1.0 - u) * np.asarray(gap_w, dtype=np.float64) + u * bursts.power_w
    wall_time = bursts.time_per_work / u
    return Response(
        time_per_work=np.asarray(wall_time, dtype=np.float64),
        energy_per_work=np.asarray(power * wall_time, dtype=np.float64),
        clock_rel=bursts.clock_rel,
    )


def center_for_mean(
    mean_w: Floats, spread: Floats | float, limit_w: Floats | float, count: int
) -> Floats:
    """The center of a :func:`spread_quantiles` demand whose capped mean,
    ``mean(min(d, limit))``, is the observed ``mean_w`` (bisection; work already held at its
    limit has a demand above what it drew)."""
    mean = np.asarray(mean_w, dtype=np.float64)
    low, high = 0.5 * mean, 4.0 * mean
    limit = np.asarray(limit_w, dtype=np.float64)[..., None]
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        drawn = np.minimum(spread_quantiles(mid, spread, count), limit).mean(axis=-1)
        below = drawn < mean
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return np.asarray(0.5 * (low + high), dtype=np.float64)
