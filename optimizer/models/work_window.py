"""Which of a GPU's busy buckets describe the work it runs now, and at what load.

A window that mixes two jobs describes neither of them, and a server's load moves: the
power controller's estimate (:func:`.cap_response.estimate_workloads`) takes each GPU's
recent buckets (:func:`recent_rows`), keeps only those since its work last changed
(:func:`since_last_change`) and reads its load from the newest ones (:func:`load_now`).
Rows are grouped by dense integer ids (one per GPU).
"""

from __future__ import annotations

import numpy as np

from wattwise.optimizer.models.boundness import kernel_activities
from wattwise.optimizer.models.common import Bools, column
from wattwise.optimizer.telemetry import Floats, Series

WORK_CHANGE = 0.15
"""A change of memory or SM activity this large between a GPU's consecutive busy buckets
means other work (another job, or a new phase): the estimate uses only what came after."""
LOAD_CHANGE = 0.2
"""Utilization moving by a fifth between consecutive buckets marks a change of work."""
LOAD_BUCKETS = 3
"""A GPU's current load is read from its last three busy buckets: a server's load moves, and
the next job of the same kind often runs at another duty cycle. (Must stay 3: the median of
:func:`load_now` is taken as the sum less the highest and the lowest.)"""


def recent_rows(time_ns: np.ndarray, ids: np.ndarray, window_ns: int) -> Bools:
    """Rows within ``window_ns`` of their group's last row (``time_ns`` is consumed)."""
    last = np.full(int(ids.max()) + 1, np.iinfo(np.int64).min)
    np.maximum.at(last, ids, time_ns)
    last -= window_ns
    time_ns -= last[ids]
    return time_ns >= 0


def since_last_change(
    series: Series, rows: np.ndarray, ids: np.ndarray, dyn: Floats, compute_w: Floats
) -> Bools:
    """Rows of each GPU since its work last changed: a gap in its busy buckets (the GPU went
    idle between jobs), a jump in memory or SM activity, or a step in utilization (a job that
    ended and one that started within the same minute leave a partly idle bucket between
    them). ``dyn`` is each row's clock-dependent power ``D``, ``compute_w`` its GPU model's
    SM power at full activity."""
    time = series.time_ns[rows]
    util = column(series, "util_gpu_pct")[rows] / 100.0
    memory, compute = kernel_activities(
        util, column(series, "util_mem_pct")[rows] / 100.0, dyn, compute_w
    )
    order = np.lexsort((time, ids))
    t, g, u = time[order], ids[order], util[order]
    step = np.diff(t)
    bucket = int(step[step > 0].min()) if (step > 0).any() else 0
    changed = np.zeros(order.size, dtype=np.bool_)
    changed[1:] = (
        (step > 1.5 * bucket)
        | (np.abs(np.diff(u)) > LOAD_CHANGE * np.maximum(u[1:], u[:-1]))
        | (np.abs(np.diff(memory[order])) > WORK_CHANGE)
        | (np.abs(np.diff(compute[order])) > WORK_CHANGE)
    )
    starts = changed.copy()
    starts[0] = True
    starts[1:] |= g[1:] != g[:-1]
    segment = np.cumsum(starts)
    last = np.zeros(int(g.max()) + 1, dtype=np.int64)
    np.maximum.at(last, g, segment)
    # The first bucket after a change straddles it (idle or the other work mixed in); it is
    # left out whenever a bucket follows it.
    straddles = changed & (np.bincount(segment)[segment] > 1)
    keep = np.zeros(order.size, dtype=np.bool_)
    keep[order] = (segment == last[g]) & ~straddles
    return keep


def load_now(time_ns: np.ndarray, ids: np.ndarray, util: Floats, groups: int) -> Floats:
    """Median utilization of each group's last :data:`LOAD_BUCKETS` rows: the newest load,
    followed within two buckets of a step and deaf to one odd bucket (the one in progress
    may hold a single reading)."""
    order = np.lexsort((-time_ns, ids))
    g = ids[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    latest = order[rank < LOAD_BUCKETS]
    g, u = ids[latest], util[latest]
    count = np.bincount(g, minlength=groups)
    total = np.bincount(g, weights=u, minlength=groups)
    high = np.full(groups, -np.inf)
    np.maximum.at(high, g, u)
    low = np.full(groups, np.inf)
    np.minimum.at(low, g, u)
    # Of three values the median is what the highest and lowest leave; of fewer, the mean.
    middle = np.where(count == LOAD_BUCKETS, total - high - low, total / np.maximum(count, 1))
    return np.asarray(middle, dtype=np.float64)
