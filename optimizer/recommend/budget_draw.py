"""What each GPU counts against its scopes under a candidate limit, when the plan holds the
predicted peak: its work's draw, the chance of hungrier work starting, and its share of a
reserve for what the prediction cannot see."""

from __future__ import annotations

import numpy as np

from wattwise.optimizer.recommend.budget_fleet import Fleet
from wattwise.optimizer.telemetry import Floats, Ints

RESERVE_Z = 2.33
"""The reserve covers the 99th percentile of the scope's draw (normal approximation)."""
PEAK_SPREAD = 0.05
"""One standard deviation of a job's power from second to second, relative to its mean,
at the least: duty and batch sizes vary from one second to the next. On the real H100
(1 s power read each second, docs/grounding.md) steady matmul and copy phases vary by
0.1–2.1 %, the launch-bound 1024² matmul by 7.4 %. A job whose measured spread is larger
(:attr:`~.budget_fleet.Fleet.spread`) is counted at its own; a smaller one is not trusted
below this, as the minutes measured need not show all of the interval ahead."""


def counted_draw(fleet: Fleet, limits: Floats, changes: Floats, reserve: Floats) -> Floats:
    """(G, K): what each GPU counts against its scopes at each candidate: its work's draw
    now, and where other work may start in the interval (with the probability work has
    changed there) what its model's busy GPUs draw more than that, plus its share of the
    scope's reserve — never more than the candidate limit, which the GPU holds. A change to
    work that draws less is not counted: the scope's peak comes before it."""
    own = np.minimum(limits, np.where(fleet.util > 0, fleet.peak_w, fleet.idle_w)[:, None])
    more = np.maximum(np.minimum(limits, fleet.typical_w[:, None]) - own, 0.0)
    return np.asarray(
        np.minimum(own + changes[:, None] * more + reserve[:, None], limits), dtype=np.float64
    )


def reserve_per_gpu(fleet: Fleet, changes: Floats, scope_of_gpu: tuple[Ints, ...]) -> Floats:
    """Each GPU's share of the watts its scopes keep above their expected draw:
    :data:`RESERVE_Z` standard deviations of the scope's sum, from work that changes (each
    GPU's independently) and from each job's seconds above its mean (:func:`job_spread`;
    a job's GPUs move together, jobs independently). A scope's reserve is shared in
    proportion to each GPU's variance; a GPU keeps its largest share over its scopes (a
    rack pools fewer GPUs than the site, so its shares are larger).

    A GPU cannot draw past its default limit, so its standard deviation is counted at most
    at its headroom there over :data:`RESERVE_Z`. Its share, ``Z·var/√pooled``, is then
    at most ``Z·sd``, within that headroom: one restless GPU near its limit cannot pull
    the pooled sum up and take reserve from the others only to have its own share cut
    at the limit."""
    own = np.where(fleet.util > 0, fleet.peak_w, fleet.idle_w)
    jump = np.maximum(np.minimum(fleet.typical_w, fleet.default_w) - own, 0.0)
    job_w = np.bincount(fleet.unit, weights=own, minlength=len(fleet.unit_names))
    spread = job_spread(fleet)[fleet.unit]
    variance = changes * (1.0 - changes) * jump**2 + spread**2 * job_w[fleet.unit] * own
    headroom = np.maximum(fleet.default_w - own, 0.0)
    variance = np.minimum(variance, (headroom / RESERVE_Z) ** 2)
    out = np.zeros(len(own))
    for scope in scope_of_gpu:
        inside = scope >= 0
        pooled = np.bincount(scope[inside], weights=variance[inside])
        share = RESERVE_Z * variance[inside] / np.sqrt(np.maximum(pooled[scope[inside]], 1e-12))
        out[inside] = np.maximum(out[inside], share)
    return out


def job_spread(fleet: Fleet) -> Floats:
    """Per job: the largest measured spread of its GPUs, never under :data:`PEAK_SPREAD`
    (its GPUs move together, so the most restless one sets the job's spread)."""
    spread = np.full(len(fleet.unit_names), PEAK_SPREAD)
    np.fmax.at(spread, fleet.unit, np.minimum(fleet.spread, 1.0))
    return spread
