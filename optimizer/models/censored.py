"""Bounded least squares with censored rows: rows whose true value is only known to be at least
what was observed (power held at a limit) count only while the fit predicts less."""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from wattwise.optimizer.models.common import Bools
from wattwise.optimizer.telemetry import Floats

RIDGE = 1e-8
"""Relative ridge on every term but the intercept: picks the smallest coefficient for a term
the rows cannot identify (a clock that never moved), and nothing else."""
MAX_ACTIVE_SET_ROUNDS = 50


def censored_fit(
    design: Floats, target: Floats, censored: Bools, bounds: tuple[Floats, Floats]
) -> Floats:
    """Bounded least squares in which a censored row counts only while the fit predicts less
    than its value (a convex squared hinge, solved by active sets: each round refits on the
    exact rows and the censored rows still under-predicted, until that set stops changing).

    Each round solves on the k×k normal equations, not the rows: with ``G = XᵀX + ridge``
    and ``G = MᵀM``, ``‖Xβ − y‖²`` equals ``‖Mβ − M⁻ᵀXᵀy‖²`` up to a constant, so the
    bounded solver sees k rows however many the fit has."""
    terms = design.shape[1]
    if target.size == 0:
        return np.zeros(terms)
    ridge = np.full(terms, RIDGE * target.size)
    ridge[0] = 0.0
    active = np.ones(target.size, dtype=np.bool_)
    coef = np.zeros(terms)
    for _ in range(MAX_ACTIVE_SET_ROUNDS):
        rows = design[active]
        gram = rows.T @ rows + np.diag(ridge)
        values, vectors = np.linalg.eigh(gram)
        root = np.sqrt(np.maximum(values, values.max() * 1e-15))
        square = root[:, None] * vectors.T
        rhs = (vectors.T @ (rows.T @ target[active])) / root
        coef = np.asarray(lsq_linear(square, rhs, bounds=bounds, method="bvls").x)
        now = ~censored | (design @ coef < target)
        if np.array_equal(now, active):
            break
        active = now
    return coef
