"""``wattwise models backtest``: read the configured window from the store, split it, fit the
power models before the split and score them after it (``models/backtest.py``).

The split is ``--split TIME`` (ISO 8601, UTC when no zone is given, or Unix seconds) or
``--holdout SHARE`` (the last share of the window's time span, 20 % by default). Either
must leave rows with power on both sides; otherwise :class:`SplitError` names the
option and the span of the data, and the command exits 2.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import numpy as np

from wattwise.clock import Clock
from wattwise.common.strict_json import clean
from wattwise.errors import OptimizerError
from wattwise.optimizer.models.backtest import BacktestResult, backtest
from wattwise.optimizer.models.common import column
from wattwise.optimizer.service.settings import OptimizerConfig
from wattwise.optimizer.service.views import iso
from wattwise.optimizer.store import open_store
from wattwise.optimizer.telemetry import Series

DEFAULT_HOLDOUT = 0.2


class SplitError(ValueError):
    """A split that cannot be used; ``option`` names the argument it came from."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


def run_backtest(
    config: OptimizerConfig,
    clock: Clock,
    *,
    split: str | None,
    holdout: str | None,
    every_s: int | None,
) -> dict[str, object]:
    """The backtest of the configured window as a JSON-ready document."""
    if split is not None and holdout is not None:
        raise SplitError("--split", "give --split or --holdout, not both")
    split_ns = None if split is None else parse_time_ns(split)
    share = DEFAULT_HOLDOUT if holdout is None else parse_share(holdout)
    every = every_s or config.models.every_s
    end_ns = clock.time_ns()
    start_ns = end_ns - int(config.models.window_s * 1e9)
    scope = config.shard.scope()
    store = open_store(config.store, clock)
    try:
        gpus = store.gpu_series(start_ns, end_ns, every_s=every, scope=scope)
        jobs = store.job_series(start_ns, end_ns, every_s=every, scope=scope)
    finally:
        store.close()
    if not np.isfinite(column(gpus, "power_w")).any():
        raise OptimizerError(f"no GPU power in the window {iso(start_ns)} .. {iso(end_ns)}")
    at = split_at(gpus, split_ns, share, "--split" if split is not None else "--holdout")
    return document(backtest(gpus, jobs, at), at, every)


def parse_time_ns(text: str) -> int:
    """An ISO 8601 time (UTC when it names no zone) or Unix seconds, as nanoseconds."""
    try:
        return round(float(text) * 1e9)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise SplitError("--split", f"{text!r} is not an ISO 8601 time or Unix seconds") from e
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1e9)


def parse_share(text: str) -> float:
    """``20%`` or ``20`` as 0.2; refused outside 0..100 % (both excluded)."""
    number = text.strip().removesuffix("%").strip()
    try:
        share = float(number) / 100.0
    except ValueError as e:
        raise SplitError("--holdout", f"{text!r} is not a percentage such as 20%") from e
    if not 0.0 < share < 1.0:
        raise SplitError("--holdout", f"{text!r} is outside 0..100 % (both excluded)")
    return share


def split_at(gpus: Series, split_ns: int | None, share: float, option: str) -> int:
    """``split_ns``, or the time before which ``1 − share`` of the data's span lies; refused
    unless rows with power lie before it and at or after it."""
    times = gpus.time_ns[np.isfinite(column(gpus, "power_w"))]
    first, last = int(times.min()), int(times.max())
    span = f"the data runs from {iso(first)} to {iso(last)}"
    if split_ns is not None:
        if not first < split_ns <= last:
            raise SplitError(option, f"{iso(split_ns)} is outside the data: {span}")
        return split_ns
    at = last - int(share * (last - first))
    if not first < at <= last:
        raise SplitError(option, f"too little data to hold out {share:.0%}: {span}")
    return at


def document(results: list[BacktestResult], split_ns: int, every_s: int) -> dict[str, object]:
    """``{"split", "every_s", "models": [{"kind", "gpu_model", "mape_pct", "mae_w",
    "samples", …}]}`` with no NaN (unknown is null)."""
    models = [asdict(r) for r in results]
    return {"split": iso(split_ns), "every_s": every_s, "models": clean(models)}
