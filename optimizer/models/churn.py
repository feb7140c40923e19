"""How often work changes on a GPU: the hazard of a busy GPU going idle (its job ended) and of
an idle one going busy (a job started), from consecutive buckets of the recent window.

A limit planned for the work on a GPU now holds until the next plan; if that work ends and
other work starts in between, the limit lands on work nobody planned for. With changes
arriving at a constant hazard ``h``, the expected share of an interval ``T`` run by work
that started inside it is ``1 − (1 − e^(−hT)) / (hT)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import column, tag_codes
from wattwise.optimizer.telemetry import Series

BUSY_MIN = 0.05
STEP_PCT = 10.0
"""A step this large in a busy GPU's utilization (or memory utilization) from one bucket to
the next is other work: one job's buckets vary by a few points."""


@dataclass(frozen=True)
class Churn:
    """Per second: hazard of a busy GPU's work ending, and of an idle GPU's starting."""

    end_per_s: float
    start_per_s: float

    def change_probability(self, busy: np.ndarray, interval_s: float) -> np.ndarray:
        """Per GPU: the probability its work changes within the next ``interval_s``."""
        hazard = np.where(busy, self.end_per_s, self.start_per_s) * interval_s
        return np.asarray(1.0 - np.exp(-hazard), dtype=np.float64)

    def unplanned_share(self, busy: np.ndarray, interval_s: float) -> np.ndarray:
        """Per GPU: expected share of the next ``interval_s`` run by work that starts in it."""
        hazard = np.where(busy, self.end_per_s, self.start_per_s) * interval_s
        with np.errstate(divide="ignore", invalid="ignore"):
            share = 1.0 - (1.0 - np.exp(-hazard)) / hazard
        return np.asarray(np.where(hazard > 1e-9, share, 0.0), dtype=np.float64)


def fit_churn(series: Series) -> Churn:
    """From a ``gpu`` series: transitions between consecutive buckets of each GPU (a busy
    GPU's work ends when it goes idle or steps to other work)."""
    if not len(series):
        return Churn(0.0, 0.0)
    ids = tag_codes(series, ("host", "gpu"))
    order = np.lexsort((series.time_ns, ids))
    ids, time_ns = ids[order], series.time_ns[order]
    util = np.nan_to_num(column(series, "util_gpu_pct")[order], nan=0.0)
    memory = np.nan_to_num(column(series, "util_mem_pct")[order], nan=0.0)
    busy = util / 100.0 >= BUSY_MIN
    same = ids[1:] == ids[:-1]
    step_s = np.diff(time_ns) / 1e9
    was_busy, now_busy = busy[:-1][same], busy[1:][same]
    step_s = step_s[same]
    # One job ending and the next starting within a bucket leaves no idle bucket between
    # them, only a step in how busy the GPU's kernels and memory are.
    stepped = (np.abs(np.diff(util)) >= STEP_PCT) | (np.abs(np.diff(memory)) >= STEP_PCT)
    busy_s, idle_s = float(step_s[was_busy].sum()), float(step_s[~was_busy].sum())
    ended = float(np.sum(was_busy & (~now_busy | stepped[same])))
    started = float(np.sum(~was_busy & now_busy))
    return Churn(ended / busy_s if busy_s > 0 else 0.0, started / idle_s if idle_s > 0 else 0.0)
