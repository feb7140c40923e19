"""When a slower GPU is worth it: the rule every cap must pass before it is recommended.

A cap trades time for energy. It is recommended only when the energy it saves per unit
of work pays for the time it costs: ``saving ≥ gain_ratio × slowdown`` (both in per
cent; by default 1 % of energy per 1 % of slowdown), with the slowdown within the bound.
The saving counts what else runs longer while the GPU is slower — the node's CPUs, fans
and other GPUs' idle draw share — so a cap that saves GPU energy but keeps the node up
longer can fail the rule. Among the settings that pass, the one with the least energy
wins; when none does, the GPU keeps its limit. Where the work's response is uncertain
(:func:`pick_bounded`), the bound holds on the worst slowdown it may see.
"""

from __future__ import annotations

import numpy as np

from wattwise.optimizer.telemetry import Floats


def worth_it(
    slowdown: Floats, saving: Floats, *, slowdown_bound: float, gain_ratio: float
) -> np.ndarray:
    """Which settings pass (slowdown and saving as fractions, any shape)."""
    slow = np.asarray(slowdown, dtype=np.float64)
    save = np.asarray(saving, dtype=np.float64)
    pays = save >= gain_ratio * np.maximum(slow, 0.0) - 1e-12
    return np.asarray((slow <= slowdown_bound + 1e-9) & pays & (save > 0.0), dtype=np.bool_)


def pick(
    slowdown: Floats, saving: Floats, *, slowdown_bound: float, gain_ratio: float
) -> np.ndarray:
    """Per row (last axis = candidate settings): the index of the passing setting with the
    greatest saving, or -1 where none passes (keep the limit)."""
    ok = worth_it(slowdown, saving, slowdown_bound=slowdown_bound, gain_ratio=gain_ratio)
    masked = np.where(ok, np.asarray(saving, dtype=np.float64), -np.inf)
    best = np.argmax(masked, axis=-1)
    return np.asarray(np.where(ok.any(axis=-1), best, -1), dtype=np.int64)


def pick_bounded(
    expected_slowdown: Floats,
    saving: Floats,
    worst_slowdown: Floats,
    *,
    slowdown_bound: float,
    gain_ratio: float,
) -> np.ndarray:
    """:func:`pick` with the bound held on the worst slowdown the work may see (the cautious
    prediction) and the expected saving paying for the expected slowdown."""
    allowed = np.asarray(worst_slowdown) <= slowdown_bound + 1e-9
    expected = np.where(allowed, expected_slowdown, np.inf)
    return pick(expected, saving, slowdown_bound=slowdown_bound, gain_ratio=gain_ratio)
