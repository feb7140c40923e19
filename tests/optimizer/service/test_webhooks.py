"""Webhooks: signed deliveries to a real local HTTP receiver, retries, and dead receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.optimizer.service.support import config, free_port
from wattwise.clock import ManualClock, SystemClock
from wattwise.errors import ConfigError
from wattwise.optimizer.recommend.budget_types import BudgetCap, BudgetPlan
from wattwise.optimizer.service.engine import Engine, Snapshot
from wattwise.optimizer.service.server import webhook_secret
from wattwise.optimizer.service.settings import WebhookSettings
from wattwise.optimizer.service.webhooks import ChangeTracker, WebhookNotifier
from wattwise.optimizer.store import EmbeddedSqliteStore

SECRET = b"webhook-secret-for-tests"


class Receiver:
    """A real HTTP server recording what it receives; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: tuple[int, ...] = (), hold: threading.Event | None = None) -> None:
        """``hold``: answer only once it is set (a receiver that is slow until told)."""
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        statuses_left = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hold is not None:
                    hold.wait(120)
                status = statuses_left.pop(0) if statuses_left else 200
                if status == 200:
                    outer.received.append((dict(self.headers.items()), body))
                    outer.got.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def engine(twin_data: tuple[Path, int]) -> Iterator[Engine]:
    path, end_ns = twin_data
    store = EmbeddedSqliteStore(path)
    yield Engine(store, config(), ManualClock(start_ns=end_ns))
    store.close()


@pytest.fixture(scope="module")
def snapshot(engine: Engine) -> Snapshot:
    return engine.refresh()


def _settings(*urls: str, **extra: object) -> WebhookSettings:
    targets = [{"url": u} for u in urls]
    return WebhookSettings.model_validate(
        {"targets": targets, "backoff_initial_s": 0.05, "timeout_s": 1.0, **extra}
    )


def test_delivery_is_signed_with_hmac_sha256_of_the_body(snapshot: Snapshot) -> None:
    receiver = Receiver()
    notifier = WebhookNotifier(_settings(receiver.url), SECRET, SystemClock(), lambda _: None)
    notifier(snapshot)
    assert receiver.got.wait(5)
    notifier.close()
    receiver.close()
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Wattwise-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == "recommendations.changed"
    with_limit = [c for c in snapshot.caps if c.recommended_limit_w is not None]
    assert len(payload["power_cap"]["changed"]) == len(with_limit)
    assert {c["zone"] for c in payload["cooling"]["changed"]} == {"z1", "z2"}


def test_receiver_errors_are_retried_with_backoff_until_delivered(snapshot: Snapshot) -> None:
    receiver = Receiver(statuses=(503, 500))
    outcomes: list[str] = []
    notifier = WebhookNotifier(_settings(receiver.url), SECRET, SystemClock(), outcomes.append)
    notifier(snapshot)
    assert receiver.got.wait(5)
    notifier.close()
    receiver.close()
    assert outcomes == ["retried", "retried", "delivered"]
    assert len(receiver.received) == 1


def test_a_4xx_answer_is_not_retried(snapshot: Snapshot) -> None:
    receiver = Receiver(statuses=(400,))
    outcomes: list[str] = []
    notifier = WebhookNotifier(_settings(receiver.url), SECRET, SystemClock(), outcomes.append)
    notifier(snapshot)
    deadline = time.monotonic() + 5
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.01)
    notifier.close()
    receiver.close()
    assert outcomes == ["failed"] and receiver.received == []


def test_dead_and_slow_webhooks_block_neither_refresh_nor_other_receivers(engine: Engine) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    release = threading.Event()
    slow = Receiver(hold=release)  # answers only once the refresh has returned
    healthy = Receiver()
    # One attempt each: a delivery made inside refresh() would time out on the held
    # receiver and fail, so only deliveries made off the refresh can both succeed.
    settings = _settings(refused, slow.url, healthy.url, max_attempts=1, timeout_s=60.0)
    outcomes: list[str] = []
    notifier = WebhookNotifier(settings, SECRET, SystemClock(), outcomes.append)
    engine.add_listener(notifier)
    try:
        engine.refresh()
        release.set()
        assert healthy.got.wait(30), "the healthy receiver waited behind a dead one"
        assert slow.got.wait(30)
        deadline = time.monotonic() + 30
        while len(outcomes) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        notifier.close(timeout_s=30)
    finally:
        release.set()
        for r in (slow, healthy):
            r.close()
    assert sorted(outcomes) == ["delivered", "delivered", "failed"]


def test_bounded_queue_drops_the_oldest_delivery(snapshot: Snapshot) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"
    outcomes: list[str] = []
    settings = _settings(refused, queue_size=2, max_attempts=20, backoff_initial_s=5.0)
    notifier = WebhookNotifier(settings, SECRET, SystemClock(), outcomes.append)
    for k in range(6):
        moved = tuple(
            replace(c, recommended_limit_w=c.recommended_limit_w + 100.0 * (k + 1))
            for c in snapshot.caps
            if c.recommended_limit_w is not None
        )
        notifier(replace(snapshot, caps=moved))
    notifier.close(timeout_s=0.5)
    # Six changes into a queue of two behind a refused receiver: the calls returned
    # at once, and the oldest deliveries were dropped instead of waited for.
    assert outcomes.count("dropped") >= 3


def _with_cap(snapshot: Snapshot, limit_w: float) -> Snapshot:
    first = next(c for c in snapshot.caps if c.recommended_limit_w is not None)
    return replace(snapshot, caps=(replace(first, recommended_limit_w=limit_w),), cooling=())


def test_cap_changes_below_25_w_are_not_material_but_drift_adds_up(snapshot: Snapshot) -> None:
    tracker = ChangeTracker(cap_change_w=25.0, setpoint_change_c=0.5)
    assert "power_cap" in tracker.changes(_with_cap(snapshot, 500.0))
    assert tracker.changes(_with_cap(snapshot, 510.0)) == {}
    assert tracker.changes(_with_cap(snapshot, 520.0)) == {}
    assert "power_cap" in tracker.changes(_with_cap(snapshot, 525.0))  # 25 W from what was sent
    gone = tracker.changes(replace(snapshot, caps=(), cooling=()))
    assert gone["power_cap"]["removed"]  # type: ignore[index]


def test_setpoint_changes_of_half_a_degree_are_material(snapshot: Snapshot) -> None:
    tracker = ChangeTracker(cap_change_w=25.0, setpoint_change_c=0.5)
    zone = snapshot.cooling[0]

    def at(c: float) -> Snapshot:
        return replace(snapshot, caps=(), cooling=(replace(zone, recommended_setpoint_c=c),))

    assert "cooling" in tracker.changes(at(21.0))
    assert tracker.changes(at(21.4)) == {}
    assert "cooling" in tracker.changes(at(21.5))


def _cap(host: str, gpu: int, planned_w: float) -> BudgetCap:
    return BudgetCap(host, gpu, None, "normal", 700.0, planned_w, 700.0, 1.0, True)


def _plan(scope: str, caps: tuple[BudgetCap, ...] = (), /, **extra: object) -> BudgetPlan:
    fields: dict[str, object] = {
        "scope": scope, "limit_w": 30_000.0, "event_id": None, "gpus": 8,
        "predicted_peak_before_w": 33_000.0, "predicted_peak_after_w": 29_000.0,
        "guaranteed_max_w": 31_000.0, "planned": True, "feasible": True, "work_lost_pct": 0.5,
        "caps": caps, "pause": (), "applied_share": 1.0, "reason": "",
    }  # fmt: skip
    return BudgetPlan(**{**fields, **extra})  # type: ignore[arg-type]


def _budget(snapshot: Snapshot, *plans: BudgetPlan) -> Snapshot:
    return replace(snapshot, caps=(), cooling=(), budget=plans)


def _changed(changes: dict[str, object]) -> list[str]:
    budget = changes.get("power_budget")
    assert budget is None or isinstance(budget, dict)
    return [] if budget is None else [p["scope"] for p in budget["changed"]]


def test_budget_plan_changes_are_material_only_past_the_thresholds(snapshot: Snapshot) -> None:
    tracker = ChangeTracker(cap_change_w=25.0, setpoint_change_c=0.5)
    caps = (_cap("a", 0, 500.0), _cap("a", 1, 600.0))
    assert _changed(tracker.changes(_budget(snapshot, _plan("rack:r01", caps)))) == ["rack:r01"]
    # 10 W, then 20 W from what was sent: drift, reported once it adds up to 25 W.
    drift = (_cap("a", 0, 510.0), _cap("a", 1, 600.0))
    assert tracker.changes(_budget(snapshot, _plan("rack:r01", drift))) == {}
    drift = (_cap("a", 0, 520.0), _cap("a", 1, 600.0))
    assert tracker.changes(_budget(snapshot, _plan("rack:r01", drift))) == {}
    moved = (_cap("a", 0, 525.0), _cap("a", 1, 600.0))
    assert _changed(tracker.changes(_budget(snapshot, _plan("rack:r01", moved)))) == ["rack:r01"]
    # A GPU leaving the caps goes back to its 700 W default: a move of 100 W.
    assert _changed(
        tracker.changes(_budget(snapshot, _plan("rack:r01", (_cap("a", 0, 525.0),))))
    ) == ["rack:r01"]
    # A GPU joining 10 W under its default is not material.
    joined = (_cap("a", 0, 525.0), _cap("b", 0, 690.0))
    assert tracker.changes(_budget(snapshot, _plan("rack:r01", joined))) == {}


@pytest.mark.parametrize(
    "change",
    [{"planned": False}, {"feasible": False}, {"event_id": "e1"}],
    ids=["unplanned", "infeasible", "under an event"],
)
def test_a_scope_changing_state_is_material(snapshot: Snapshot, change: dict[str, object]) -> None:
    tracker = ChangeTracker(cap_change_w=25.0, setpoint_change_c=0.5)
    tracker.changes(_budget(snapshot, _plan("site")))
    assert tracker.changes(_budget(snapshot, _plan("site"))) == {}
    assert _changed(tracker.changes(_budget(snapshot, _plan("site", **change)))) == ["site"]


def test_a_plan_that_appears_or_goes_away_is_material(snapshot: Snapshot) -> None:
    tracker = ChangeTracker(cap_change_w=25.0, setpoint_change_c=0.5)
    tracker.changes(_budget(snapshot, _plan("site")))
    both = tracker.changes(_budget(snapshot, _plan("site"), _plan("zone:z1")))
    assert _changed(both) == ["zone:z1"]
    gone = tracker.changes(_budget(snapshot, _plan("zone:z1")))
    assert gone["power_budget"] == {"changed": [], "removed": [{"scope": "site"}]}


def test_power_budget_changes_reach_only_the_receivers_that_asked_for_them(
    snapshot: Snapshot,
) -> None:
    everything, caps_only = Receiver(), Receiver()
    settings = WebhookSettings.model_validate(
        {
            "targets": [{"url": everything.url}, {"url": caps_only.url, "events": ["power_cap"]}],
            "backoff_initial_s": 0.05,
            "timeout_s": 1.0,
        }
    )
    outcomes: list[str] = []
    notifier = WebhookNotifier(settings, SECRET, SystemClock(), outcomes.append)
    plan = _plan("rack:r01", (_cap("sim-r01-n01", 0, 450.0),), event_id="e1")
    notifier(_budget(snapshot, plan))
    assert everything.got.wait(5)
    assert not caps_only.got.wait(0.5)
    notifier.close()
    everything.close()
    caps_only.close()
    headers, body = everything.received[0]
    assert hmac.compare_digest(
        headers["X-Wattwise-Signature"],
        "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    )
    payload = json.loads(body)
    assert payload["event"] == "recommendations.changed"
    assert payload["power_budget"]["changed"] == [plan.as_dict()]
    assert payload["power_budget"]["removed"] == []
    assert "power_cap" not in payload and "cooling" not in payload
    assert caps_only.received == [] and outcomes == ["delivered"]


def test_targets_without_a_secret_file_name_the_setting_as_missing() -> None:
    # Regression: "webhooks.secret_file: None is not allowed", Python's word for nothing.
    with pytest.raises(ConfigError) as missing:
        webhook_secret(WebhookSettings())
    assert str(missing.value).startswith("webhooks.secret_file: nothing was given; it must be ")
