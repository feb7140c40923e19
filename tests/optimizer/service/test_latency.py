"""Collector passes kept off the request path: the engine's objects frozen per snapshot,
each pass timed into /metrics, and nothing frozen left to leak as cyclic garbage."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.latency import FULL_PASS_EVERY, SWITCH_INTERVAL_S, GcPauses
from wattwise.optimizer.service.metrics import ServiceMetrics


@pytest.fixture
def pauses() -> Iterator[GcPauses]:
    pauses = GcPauses(ServiceMetrics())
    pauses.install()
    yield pauses
    pauses.uninstall()
    gc.unfreeze()


def _passes(metrics: ServiceMetrics, generation: str) -> float:
    value = metrics.registry.get_sample_value(
        "wattwise_api_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


def test_every_collection_is_timed_into_the_metrics(pauses: GcPauses) -> None:
    before = _passes(pauses.metrics, "2")
    gc.collect()
    assert _passes(pauses.metrics, "2") == before + 1
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)


def test_a_snapshot_freezes_what_the_engine_holds(engine: Engine, pauses: GcPauses) -> None:
    snapshot = engine.refresh()
    held = (id(snapshot.caps), id(snapshot.gpus), id(snapshot.where))
    assert set(held) <= {id(o) for o in gc.get_objects()}  # what a full pass would walk
    pauses.settle(snapshot)
    assert not set(held) & {id(o) for o in gc.get_objects()}
    assert gc.get_freeze_count() > len(snapshot.caps)


def test_refreshes_and_refits_leave_no_frozen_cycles_behind(
    engine: Engine, pauses: GcPauses
) -> None:
    # A cycle frozen while alive and dropped later would never be collected (the
    # unfreeze below is the only pass that could see it): there must be none.
    pauses.settle(engine.refresh())
    engine.refit()
    pauses.settle(engine.refresh())
    gc.unfreeze()
    assert gc.collect() == 0


def test_full_passes_wait_for_many_young_ones_while_installed() -> None:
    # With CPython's 10, freezing made a 1,000-node refresh run six full passes of
    # 20-70 ms each over objects it still used (bench/gil_stalls.py).
    before, interval = gc.get_threshold(), sys.getswitchinterval()
    pauses = GcPauses(ServiceMetrics())
    pauses.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], FULL_PASS_EVERY)
        assert FULL_PASS_EVERY >= 100
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    finally:
        pauses.uninstall()
    assert gc.get_threshold() == before
    assert sys.getswitchinterval() == pytest.approx(interval)
