"""The engine on twin telemetry: what refit and refresh compute and write back to the store."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.drip import drip_server
from tests.optimizer.service.support import config, fill_store
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import encode_many
from wattwise.errors import NotReady, StoreUnavailable
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.store import EmbeddedSqliteStore
from wattwise.optimizer.store.influx import InfluxStore
from wattwise.optimizer.telemetry import Scope


@pytest.fixture
def own_copy(twin_data: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    path, end_ns = twin_data
    copy = tmp_path / "wattwise.sqlite"
    shutil.copy(path, copy)
    return copy, end_ns


def test_refresh_writes_recommendation_lines_the_store_reads_back(
    own_copy: tuple[Path, int],
) -> None:
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    snapshot = engine.refresh()
    store.close()
    written = EmbeddedStore(path).latest("recommendation")
    caps = [p for p in written if p.tags["kind"] == "power_cap"]
    cooling = [p for p in written if p.tags["kind"] == "cooling"]
    assert len(caps) == len(snapshot.caps) == 32
    assert {p.tags["zone"] for p in cooling} == {"z1", "z2"}
    by_gpu = {(p.tags["host"], int(p.tags["gpu"])): p for p in caps}
    for rec in snapshot.caps:
        point = by_gpu[(rec.host, rec.gpu)]
        assert point.time_ns == end_ns and point.tags["objective"] == "slowdown_bound"
        assert point.fields.get("recommended_limit_w") == rec.recommended_limit_w
        assert point.fields["samples"] == rec.evidence.samples


def test_refresh_writes_each_power_budget_plan_the_store_reads_back(tmp_path: Path) -> None:
    # A store of its own: the session's twin store also holds other tests' plans.
    path = tmp_path / "fresh.sqlite"
    end_ns = fill_store(path).time_ns()
    store = EmbeddedSqliteStore(path)
    # the site's limit well under the twin's draw (~18 kW at its peak); r01's far above it
    budgets = {"budgets.site_w": 15_000.0, "budgets.rack_w": {"r01": 1e9}}
    engine = Engine(store, config(**budgets), ManualClock(start_ns=end_ns))
    snapshot = engine.refresh()
    store.close()
    plans = {plan.scope: plan for plan in snapshot.budget}
    assert set(plans) == {"site", "rack:r01"}
    assert plans["site"].planned and plans["site"].caps and not plans["rack:r01"].planned
    written = EmbeddedStore(path).latest("recommendation")
    points = {p.tags["scope"]: p for p in written if p.tags["kind"] == "power_budget"}
    assert set(points) == set(plans)
    for scope, plan in plans.items():
        point = points[scope]
        assert point.time_ns == end_ns and point.tags == {"kind": "power_budget", "scope": scope}
        assert point.fields == {
            "limit_w": plan.limit_w,
            "predicted_peak_before_w": plan.predicted_peak_before_w,
            "predicted_peak_after_w": plan.predicted_peak_after_w,
            "guaranteed_max_w": plan.guaranteed_max_w,
            "work_lost_pct": plan.work_lost_pct,
            "capped_gpus": len(plan.caps),
            "gpus": plan.gpus,
            "applied_share": plan.applied_share,
            "planned": int(plan.planned),
            "feasible": int(plan.feasible),
        }
        assert type(point.fields["planned"]) is int and type(point.fields["capped_gpus"]) is int
    # the caps and cooling are still written beside the plans, in the same refresh
    kinds = {p.tags["kind"] for p in written if p.time_ns == end_ns}
    assert kinds == {"power_cap", "cooling", "power_budget"}


def test_a_plan_covers_the_appliers_poll_after_the_refresh_interval(tmp_path: Path) -> None:
    """A plan stays on the GPUs until the appliers take up the next one: the slower they
    poll, the more work not running yet the plan must make room for."""
    path = tmp_path / "fresh.sqlite"
    end_ns = fill_store(path).time_ns()
    lost = {}
    for applier_interval_s in (1.0, 3600.0):
        store = EmbeddedSqliteStore(path)
        budgets = {"budgets.site_w": 15_000.0, "budgets.applier_interval_s": applier_interval_s}
        engine = Engine(store, config(**budgets), ManualClock(start_ns=end_ns))
        (site,) = [plan for plan in engine.refresh().budget if plan.scope == "site"]
        store.close()
        lost[applier_interval_s] = site.work_lost_pct
    assert lost[3600.0] > lost[1.0] + 5.0


def test_refit_writes_one_model_line_per_model_with_its_error(own_copy: tuple[Path, int]) -> None:
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    fitted = Engine(store, config(), ManualClock(start_ns=end_ns)).refit()
    store.close()
    lines = EmbeddedStore(path).latest("model")
    assert len(lines) == len(fitted.infos)
    power = next(p for p in lines if p.tags["name"] == "power")
    assert isinstance(power.fields["error_pct"], float) and power.fields["samples"] > 0  # type: ignore[operator]


def test_nothing_is_served_before_the_first_refresh(own_copy: tuple[Path, int]) -> None:
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    with pytest.raises(NotReady):
        _ = engine.snapshot
    store.close()


def test_shard_reads_only_its_zone(own_copy: tuple[Path, int]) -> None:
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(**{"shard.zones": ["z2"]}), ManualClock(start_ns=end_ns))
    snapshot = engine.refresh()
    store.close()
    assert [z.zone for z in snapshot.cooling] == ["z2"]
    assert {snapshot.where[c.host][1] for c in snapshot.caps} == {"z2"}
    assert len(snapshot.caps) == 16


class _WritesFail(EmbeddedSqliteStore):
    def write(self, lines: object) -> None:
        raise StoreUnavailable("store down for writes")


def test_store_write_failure_keeps_the_recommendations(own_copy: tuple[Path, int]) -> None:
    path, end_ns = own_copy
    store = _WritesFail(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    snapshot = engine.refresh()
    store.close()
    assert engine.snapshot is snapshot and len(snapshot.caps) == 32
    assert engine.store_write_failures == 2  # the model lines and the recommendation lines


class _WatchedLock:
    """A lock that notes when someone had to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.waited.set()
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_first_refresh_waits_for_a_refit_in_progress_instead_of_skipping(
    own_copy: tuple[Path, int],
) -> None:
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    lock = _WatchedLock()
    engine._refit_lock = lock  # type: ignore[assignment]
    refitting = threading.Event()
    refits = []

    def hold_until_refresh_waits(step: str, share: float) -> None:
        # The scheduler's first refit is under way and stays so until the refresh waits.
        refitting.set()
        assert lock.waited.wait(30), "the refresh never waited for the refit"

    def first_refit() -> None:
        refits.append(engine.refit(hold_until_refresh_waits))

    holder = threading.Thread(target=first_refit)
    holder.start()
    assert refitting.wait(30)
    snapshot = engine.refresh()  # raised Busy before, leaving the API empty for 5 minutes
    holder.join()
    store.close()
    assert lock.waited.is_set()
    assert len(snapshot.caps) == 32
    # The refresh used the models of the refit it waited for rather than fitting its own.
    assert refits and engine.fitted is refits[0]


def _versions(registry: Path, kind: str) -> set[str]:
    return {p.name for p in registry.glob(f"{kind}/*/v*.json")}


def test_each_refit_keeps_a_new_version_of_every_model(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    registry = tmp_path / "models"
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(**{"models.registry_dir": registry}), ManualClock(end_ns))
    first, second = engine.refit(), engine.refit()
    store.close()
    assert {i.version for i in first.infos} == {1} and {i.version for i in second.infos} == {2}
    assert _versions(registry, "power") == {"v1.json", "v2.json"}
    assert len(list(registry.glob("*/*/v2.npz"))) == len(second.infos)
    listed = engine.stored_models()
    assert len(listed) == 2 * len(second.infos)
    assert {(i.kind, i.version) for i in listed} >= {("power", 1), ("power", 2)}


def test_restarted_engine_serves_caps_from_the_registry_before_any_refit(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    settings = config(**{"models.registry_dir": tmp_path / "models"})
    store = EmbeddedSqliteStore(path)
    before = Engine(store, settings, ManualClock(end_ns))
    before.refit()
    expected = before.refresh()
    restarted = Engine(store, settings, ManualClock(end_ns))
    assert restarted.has_models  # before any refit or refresh
    snapshot = restarted.refresh()
    store.close()
    assert [c.recommended_limit_w for c in snapshot.caps] == [
        c.recommended_limit_w for c in expected.caps
    ]
    assert len(snapshot.caps) == 32
    assert not list((tmp_path / "models").glob("*/*/v2.json"))  # no refit ran


def test_registry_keeps_only_the_newest_versions_when_configured(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    registry = tmp_path / "models"
    settings = config(**{"models.registry_dir": registry, "models.keep_versions": 2})
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, settings, ManualClock(end_ns))
    for _ in range(3):
        engine.refit()
    store.close()
    assert _versions(registry, "cap_response") == {"v2.json", "v3.json"}
    assert not list(registry.glob("*/*/v1.*"))


def test_tampered_registry_file_starts_without_models_instead_of_failing(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    registry = tmp_path / "models"
    settings = config(**{"models.registry_dir": registry})
    store = EmbeddedSqliteStore(path)
    Engine(store, settings, ManualClock(end_ns)).refit()
    next(registry.glob("power/*/v1.json")).write_text('{"format": 1, "kind": "power"}')
    restarted = Engine(store, settings, ManualClock(end_ns))
    store.close()
    assert not restarted.has_models
    with pytest.raises(NotReady):
        _ = restarted.fitted


def test_unwritable_registry_still_installs_the_refit(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    blocker = tmp_path / "models"
    blocker.write_text("a file where the registry directory should be")
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(**{"models.registry_dir": blocker}), ManualClock(end_ns))
    fitted = engine.refit()
    store.close()
    assert engine.fitted is fitted and engine.registry_failures == 1


def test_refit_against_a_store_dripping_its_answer_fails_and_frees_the_lock() -> None:
    # The store answers a byte at a time: a refit used to wait forever holding its lock,
    # so every later /v1/refit answered 409.
    with drip_server(interval_s=0.05) as server:
        store = InfluxStore(server.url, database="wattwise", timeout_s=5.0, deadline_s=1.0)
        engine = Engine(store, config(), ManualClock())
        with pytest.raises(StoreUnavailable, match="deadline"):
            engine.refit()
        with pytest.raises(StoreUnavailable, match="deadline"):
            engine.refit()  # not Busy: the first one let go of the lock
        store.close()
    assert len(server.requests) >= 2


def test_a_gpu_with_a_fatal_xid_or_a_pending_remap_gets_no_cap_and_no_job(
    own_copy: tuple[Path, int],
) -> None:
    """The store's gpu_xid events and the newest remapped_rows_pending reach caps and
    placement through the engine."""
    path, end_ns = own_copy
    store = EmbeddedSqliteStore(path)
    gpus = store.latest_gpus(Scope())
    lost, remapping = gpus[0], gpus[5]
    tags = {"host": lost.host, "gpu": str(lost.gpu), "uuid": lost.uuid, "xid": "79"}
    xid = Reading("gpu_xid", {**tags, "zone": lost.zone}, {"count": 1}, end_ns - 120 * 10**9)
    newest = next(
        p
        for p in EmbeddedStore(path).latest("gpu")
        if (p.tags["host"], p.tags["gpu"]) == (remapping.host, str(remapping.gpu))
    )
    pending = Reading("gpu", newest.tags, {**newest.fields, "remapped_rows_pending": 1}, end_ns)
    store.write(encode_many([xid, pending]))
    engine = Engine(store, config(), ManualClock(start_ns=end_ns))
    snapshot = engine.refresh()
    store.close()
    caps = {(c.host, c.gpu): c for c in snapshot.caps}
    assert caps[(lost.host, lost.gpu)].reason == (
        "no recommendation: GPU unhealthy: XID 79 (GPU has fallen off the bus) in the last 2 min"
    )
    assert "row remapping pending" in caps[(remapping.host, remapping.gpu)].reason
    # the view placement reads carries both reasons, on those two GPUs only
    assert sorted(h for h in snapshot.fleet.gpu_health.tolist() if h) == sorted(
        [
            "XID 79 (GPU has fallen off the bus) in the last 2 min",
            "row remapping pending: drain and reset the GPU",
        ]
    )
