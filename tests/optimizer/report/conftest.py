"""A twin-filled embedded store for the report tests, ending at the real time of the test
run (so the CLI, which reads the system clock, finds the data in its window)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.settings import load_optimizer_config
from wattwise.optimizer.store import EmbeddedSqliteStore

MINUTES = 18
READ_EVERY_S = 10.0


@dataclass(frozen=True)
class Twin:
    path: Path
    end_ns: int
    gpu_energy_j: float
    """The simulator's exact GPU energy over the recorded minutes."""


def fill_store(path: Path, keep: Callable[[Reading], bool] = lambda r: True) -> Twin:
    """6 nodes × 4 H100 in 3 racks and 2 zones, read every 10 s for 18 minutes."""
    end_ns = time.time_ns() // 60_000_000_000 * 60_000_000_000
    clock = ManualClock(start_ns=end_ns - MINUTES * 60 * 1_000_000_000)
    spec = FleetSpec.uniform(6, 4, racks=3, zones=2, seed=3, busy_share=0.7, idle_gap_mean_s=1e6)
    fleet = SimFleet(spec, clock)
    store = EmbeddedSqliteStore(path)
    try:
        energy_at_start_j = fleet.truth.energy_j()
        for _ in range(int(MINUTES * 60 / READ_EVERY_S)):
            clock.advance(READ_EVERY_S)
            store.write(encode_many([r for r in fleet.read() if keep(r)]))
        energy_j = fleet.truth.energy_j() - energy_at_start_j
    finally:
        store.close()
        fleet.close()
    return Twin(path, clock.time_ns(), energy_j)


@pytest.fixture(scope="session")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Twin:
    return fill_store(tmp_path_factory.mktemp("twin") / "wattwise.sqlite")


def twin_engine(twin: Twin) -> Iterator[Engine]:
    store = EmbeddedSqliteStore(twin.path)
    config = load_optimizer_config(None, {"models.window_s": 3600.0, "models.job_profiles": False})
    try:
        yield Engine(store, config, ManualClock(start_ns=twin.end_ns))
    finally:
        store.close()


@pytest.fixture
def engine(twin: Twin) -> Iterator[Engine]:
    yield from twin_engine(twin)
