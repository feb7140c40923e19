"""Scheduled refits and refreshes: they run on their intervals, and a failing run is counted."""

from __future__ import annotations

import time
from pathlib import Path

from tests.optimizer.service.support import config
from wattwise.clock import ManualClock
from wattwise.errors import Busy, StoreUnavailable
from wattwise.optimizer.service.engine import Engine, Snapshot
from wattwise.optimizer.service.metrics import ServiceMetrics
from wattwise.optimizer.service.scheduler import build_scheduler, run_job
from wattwise.optimizer.store import EmbeddedSqliteStore


def _value(metrics: ServiceMetrics, job: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "wattwise_optimizer_jobs_total", {"job": job, "result": result}
    )
    return value or 0.0


def test_scheduler_refits_at_once_and_refreshes_every_interval(
    twin_data: tuple[Path, int],
) -> None:
    path, end_ns = twin_data
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    seen: list[Snapshot] = []
    engine.add_listener(seen.append)
    metrics = ServiceMetrics()
    scheduler = build_scheduler(engine, metrics, refit_interval_s=3600, refresh_interval_s=0.3)
    scheduler.start()
    deadline = time.monotonic() + 15
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.shutdown(wait=True)
    store.close()
    assert len(seen) >= 3
    assert _value(metrics, "refit", "ok") == 1
    assert _value(metrics, "refresh", "ok") >= 3


def test_failing_job_is_counted_and_does_not_raise() -> None:
    metrics = ServiceMetrics()

    def down() -> None:
        raise StoreUnavailable("influxd refused the connection")

    def busy() -> None:
        raise Busy("a refit is already running")

    def bug() -> None:
        raise KeyError("a bug")

    assert run_job("refresh", down, metrics) is False
    assert run_job("refit", busy, metrics) is False
    assert run_job("refresh", bug, metrics) is False
    assert run_job("refresh", lambda: None, metrics) is True
    assert _value(metrics, "refresh", "failed") == 2
    assert _value(metrics, "refit", "skipped") == 1
    assert _value(metrics, "refresh", "ok") == 1
