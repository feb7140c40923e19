"""What a restarted optimizer takes back from the model registry: every model of the last
refit, the workload profiles that placement reads among them."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.optimizer.service.support import config
from wattwise.clock import ManualClock
from wattwise.optimizer.models.workload import WorkloadProfile, WorkloadProfiles
from wattwise.optimizer.service import placing
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.schemas import PlacementBody
from wattwise.optimizer.store import EmbeddedSqliteStore


@pytest.fixture
def store(twin_data: tuple[Path, int], tmp_path: Path) -> Iterator[EmbeddedSqliteStore]:
    """A copy of the twin's store: a refit writes its model lines into it."""
    copy = tmp_path / "wattwise.sqlite"
    shutil.copy(twin_data[0], copy)
    store = EmbeddedSqliteStore(copy)
    yield store
    store.close()


def _engine(store: EmbeddedSqliteStore, end_ns: int, registry: Path) -> Engine:
    return Engine(store, config(**{"models.registry_dir": registry}), ManualClock(end_ns))


def _refit_then_restart(
    store: EmbeddedSqliteStore, end_ns: int, registry: Path
) -> tuple[Engine, Engine]:
    """An engine after one refit, and one started afterwards on the same registry (no refit)."""
    before = _engine(store, end_ns, registry)
    before.refit()
    return before, _engine(store, end_ns, registry)


def _same(a: WorkloadProfile, b: WorkloadProfile) -> bool:
    pairs = ((getattr(a, f), getattr(b, f)) for f in WorkloadProfile.__slots__)
    return all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in pairs
    )


def test_workload_profiles_lost_on_restart(
    store: EmbeddedSqliteStore, twin_data: tuple[Path, int], tmp_path: Path
) -> None:
    before, restarted = _refit_then_restart(store, twin_data[1], tmp_path / "models")
    fitted = before.fitted.profiles
    assert len(fitted) >= 8  # the twin runs a job on half of its 32 GPUs
    loaded = restarted.fitted.profiles  # was empty until the first refit
    assert isinstance(loaded, WorkloadProfiles) and list(loaded) == list(fitted)
    assert all(_same(fitted[name], loaded[name]) for name in fitted)
    assert loaded.info == fitted.info and loaded.info.version == 1
    job = next(iter(loaded))
    restarted.refresh()
    answer = placing.place(restarted, PlacementBody(gpus=1, job=job), explain=False)
    candidates = answer["candidates"]
    assert isinstance(candidates, list) and candidates
    assert all(f"the profile of job {job}" in c["reason"] for c in candidates)
    assert not list((tmp_path / "models").glob("*/*/v2.json"))  # no refit ran


def test_stored_profiles_are_listed_with_the_other_models(
    store: EmbeddedSqliteStore, twin_data: tuple[Path, int], tmp_path: Path
) -> None:
    before, restarted = _refit_then_restart(store, twin_data[1], tmp_path / "models")
    listed = {(i.kind, i.scope): i for i in restarted.stored_models()}
    profiles = listed[("workload", "fleet")]
    assert profiles == before.fitted.profiles.info
    assert profiles.samples == sum(p.samples for p in before.fitted.profiles.values()) > 0
    assert 0 < profiles.window_start_ns < profiles.window_end_ns
    assert profiles.notes == f"{len(before.fitted.profiles)} job profiles"
    assert profiles in before.fitted.infos  # also written to the store as a model line


def test_registry_written_before_profiles_were_kept_still_starts(
    store: EmbeddedSqliteStore, twin_data: tuple[Path, int], tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    before, _ = _refit_then_restart(store, twin_data[1], registry)
    shutil.rmtree(registry / "workload")
    restarted = _engine(store, twin_data[1], registry)
    assert restarted.has_models and len(restarted.fitted.profiles) == 0
    assert restarted.fitted.power.keys() == before.fitted.power.keys()
