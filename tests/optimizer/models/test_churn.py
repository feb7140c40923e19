from __future__ import annotations

import numpy as np

from wattwise.optimizer.models.churn import Churn, fit_churn
from wattwise.optimizer.telemetry import Series


def test_hazards_count_transitions_per_second_busy_and_idle() -> None:
    # One GPU, 60 s buckets: busy 4, idle 2, busy 4 → one end over 4 busy steps' time
    # (4 × 60 s before the last busy bucket counts only steps that have a next bucket).
    util = np.array([90, 90, 90, 90, 0, 0, 90, 90, 90, 90], dtype=float)
    t = (np.arange(util.size) * 60_000_000_000).astype(np.int64)
    tags = {"host": np.full(t.size, "n", dtype=object), "gpu": np.full(t.size, "0", dtype=object)}
    churn = fit_churn(Series(t, tags, {"util_gpu_pct": util}))
    assert churn.end_per_s == 1 / (7 * 60.0)
    assert churn.start_per_s == 1 / (2 * 60.0)


def test_the_unplanned_share_grows_with_the_hazard_and_is_zero_without_changes() -> None:
    busy = np.array([True, False])
    assert np.all(Churn(0.0, 0.0).unplanned_share(busy, 300.0) == 0.0)
    slow, fast = Churn(1e-4, 1e-4), Churn(1e-2, 1e-2)
    assert np.all(slow.unplanned_share(busy, 300) < fast.unplanned_share(busy, 300))
    assert np.all(fast.unplanned_share(busy, 300) < 1.0)
