"""The clock–power curve under which the same work draws the same demand at every clock it ran.

A kernel run at several duty cycles (or under several limits) is held at several clocks;
its demand at the top clock — what its bursts would draw uncapped — is one number. Each
run gives that demand as ``(burst − gap − memory)/φ(x)``; the curve that makes them agree
best is the one the data support (:func:`fit_same_work`). Curves that agree almost as
well are as plausible: the flattest of them is the cautious one, under which a limit
costs the most clock (:class:`CurveFit`).

``tests/optimizer/models/test_priors.py`` runs this on the real H100's 8192² matmul at
five duty cycles (``tests/data/h100``): the H100's prior in :mod:`.priors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.limit_response import ClockCurve
from wattwise.optimizer.telemetry import Floats

KNEE_GRID = np.round(np.arange(0.30, 0.951, 0.01), 2)
VOLTAGE_GRID = np.round(np.arange(0.60, 1.001, 0.01), 2)
PLAUSIBLE_SPREAD = 1.5
"""A curve whose demands spread at most this many times the best curve's is as plausible."""
FLATNESS_AT = 0.85
"""Curves are ranked flat-to-steep by φ here: the clock a deep-but-usual cap leaves."""


@dataclass(frozen=True)
class Run:
    """One run of the work: its burst power, gap power, memory power and relative clock."""

    burst_w: float
    gap_w: float
    memory_w: float
    clock_rel: float


@dataclass(frozen=True)
class CurveFit:
    typical: ClockCurve
    cautious: ClockCurve
    spread: float
    """Coefficient of variation of the demands under the typical curve."""


def fit_same_work(runs: Sequence[Run]) -> CurveFit:
    """The curve under which every run's demand at the top clock agrees best, and the flattest
    one within :data:`PLAUSIBLE_SPREAD` of it."""
    burst = np.array([r.burst_w - r.gap_w - r.memory_w for r in runs])
    clock = np.array([r.clock_rel for r in runs])
    knees, volts = np.meshgrid(KNEE_GRID, VOLTAGE_GRID, indexing="ij")
    curve = ClockCurve(knees.ravel()[:, None], volts.ravel()[:, None])  # type: ignore[arg-type]
    demand = burst[None, :] / np.maximum(curve.phi(clock[None, :]), 1e-6)
    spread = demand.std(axis=1) / demand.mean(axis=1)
    best = int(np.argmin(spread))
    plausible = np.flatnonzero(spread <= PLAUSIBLE_SPREAD * spread[best])
    flatness = curve.phi(np.full((len(spread), 1), FLATNESS_AT))[:, 0]
    flattest = int(plausible[np.argmax(flatness[plausible])])
    return CurveFit(_one(curve, best), _one(curve, flattest), float(spread[best]))


def _one(curves: ClockCurve, k: int) -> ClockCurve:
    knees: Floats = np.asarray(curves.knee_rel)
    volts: Floats = np.asarray(curves.knee_voltage)
    return ClockCurve(float(knees.ravel()[k]), float(volts.ravel()[k]))
