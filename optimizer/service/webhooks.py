"""Push recommendations to webhook receivers when they change materially.

Material: a GPU's recommended cap differs by at least ``cap_change_w`` from
what was last sent, a zone's setpoint by at least ``setpoint_change_c``, or a
recommendation appeared or went away. A power budget's plan changes materially
when it appears or goes away, becomes planned or unplanned, feasible or
infeasible, comes under another event, or any of its GPUs' planned limits
moves by at least ``cap_change_w``. Changes are compared with what was last
*sent*, so slow drift is reported once it adds up.

Each target has its own worker thread and bounded queue: a dead or slow
receiver only delays its own deliveries, never the optimizer or other
receivers; when its queue is full the oldest delivery is dropped. Bodies are
signed with HMAC-SHA256 of the exact bytes sent: ``X-Wattwise-Signature:
sha256=<hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from wattwise.clock import Clock
from wattwise.common.http import deadline_client
from wattwise.common.strict_json import clean
from wattwise.optimizer.recommend.budget_types import BudgetPlan
from wattwise.optimizer.recommend.types import CapRecommendation, CoolingRecommendation
from wattwise.optimizer.service.engine import Snapshot
from wattwise.optimizer.service.settings import WebhookSettings, WebhookTarget
from wattwise.optimizer.service.views import iso

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Wattwise-Signature"
Outcome = Callable[[str], None]
"""Told "delivered", "retried", "failed" or "dropped" (for metrics)."""


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass
class ChangeTracker:
    """What was last sent, and which new recommendations differ from it materially."""

    cap_change_w: float
    setpoint_change_c: float

    def __post_init__(self) -> None:
        self._caps: dict[tuple[str, int], CapRecommendation] = {}
        self._cooling: dict[tuple[str, str], CoolingRecommendation] = {}
        self._budget: dict[str, BudgetPlan] = {}

    def changes(self, snapshot: Snapshot) -> dict[str, object]:
        """The ``power_cap``, ``cooling`` and ``power_budget`` changes since the last call
        (empty if none)."""
        caps = {(c.host, c.gpu): c for c in snapshot.caps if c.recommended_limit_w is not None}
        cooling = {(c.cluster, c.zone): c for c in snapshot.cooling}
        changed_caps = [c for k, c in caps.items() if self._cap_moved(self._caps.get(k), c)]
        changed_cooling = [
            c for k, c in cooling.items() if self._setpoint_moved(self._cooling.get(k), c)
        ]
        out: dict[str, object] = {}
        gone_caps = [{"host": h, "gpu": g} for h, g in self._caps.keys() - caps.keys()]
        gone_zones = [{"cluster": c, "zone": z} for c, z in self._cooling.keys() - cooling.keys()]
        if changed_caps or gone_caps:
            out["power_cap"] = {
                "changed": [c.as_dict() for c in changed_caps],
                "removed": gone_caps,
            }
        if changed_cooling or gone_zones:
            out["cooling"] = {
                "changed": [c.as_dict() for c in changed_cooling],
                "removed": gone_zones,
            }
        self._caps = {k: self._caps.get(k, c) for k, c in caps.items()}
        self._caps.update({(c.host, c.gpu): c for c in changed_caps})
        self._cooling = {k: self._cooling.get(k, c) for k, c in cooling.items()}
        self._cooling.update({(c.cluster, c.zone): c for c in changed_cooling})
        budget = self._budget_changes(snapshot.budget)
        if budget:
            out["power_budget"] = budget
        return out

    def _budget_changes(self, plans: tuple[BudgetPlan, ...]) -> dict[str, object]:
        now = {p.scope: p for p in plans}
        changed = [p for s, p in now.items() if self._plan_moved(self._budget.get(s), p)]
        gone = [{"scope": s} for s in sorted(self._budget.keys() - now.keys())]
        self._budget = {s: self._budget.get(s, p) for s, p in now.items()}
        self._budget.update({p.scope: p for p in changed})
        if not changed and not gone:
            return {}
        return {"changed": [p.as_dict() for p in changed], "removed": gone}

    def _plan_moved(self, old: BudgetPlan | None, new: BudgetPlan) -> bool:
        if old is None:
            return True
        if (old.planned, old.feasible, old.event_id) != (new.planned, new.feasible, new.event_id):
            return True
        # A GPU missing from a plan's caps stays at its default limit.
        before = {(c.host, c.gpu): c for c in old.caps}
        after = {(c.host, c.gpu): c for c in new.caps}
        for key in before.keys() | after.keys():
            default = (before.get(key) or after[key]).default_limit_w
            old_w = before[key].planned_limit_w if key in before else default
            new_w = after[key].planned_limit_w if key in after else default
            if abs(new_w - old_w) >= self.cap_change_w:
                return True
        return False

    def _cap_moved(self, old: CapRecommendation | None, new: CapRecommendation) -> bool:
        if old is None or old.recommended_limit_w is None or new.recommended_limit_w is None:
            return True
        return abs(new.recommended_limit_w - old.recommended_limit_w) >= self.cap_change_w

    def _setpoint_moved(
        self, old: CoolingRecommendation | None, new: CoolingRecommendation
    ) -> bool:
        if old is None:
            return True
        delta = new.recommended_setpoint_c - old.recommended_setpoint_c
        return bool(abs(delta) >= self.setpoint_change_c)


class TargetWorker:
    """Delivers bodies to one receiver, with retries and backoff, on its own thread."""

    def __init__(
        self,
        target: WebhookTarget,
        settings: WebhookSettings,
        secret: bytes,
        clock: Clock,
        outcome: Outcome,
    ) -> None:
        self.target = target
        self._settings = settings
        self._secret = secret
        self._clock = clock
        self._outcome = outcome
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=settings.queue_size)
        self._stop = threading.Event()
        self._client = deadline_client("", timeout_s=settings.timeout_s, total_s=settings.timeout_s)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def submit(self, body: bytes) -> None:
        """Queue ``body``; never blocks (the oldest queued body makes room)."""
        while True:
            try:
                self._queue.put_nowait(body)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._outcome("dropped")
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                body = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._deliver(body)

    def _deliver(self, body: bytes) -> None:
        delay_s = self._settings.backoff_initial_s
        for attempt in range(1, self._settings.max_attempts + 1):
            result = self._post(body)
            if result == "delivered":
                self._outcome("delivered")
                return
            if result == "refused" or attempt == self._settings.max_attempts:
                break
            self._outcome("retried")
            if self._clock.sleep_until(self._clock.monotonic() + delay_s, self._stop):
                return
            delay_s = min(2 * delay_s, self._settings.backoff_max_s)
        self._outcome("failed")
        log.warning("webhook %s: gave up after %d attempts", self.target.url, attempt)

    def _post(self, body: bytes) -> str:
        """ "delivered", "retry" (network error, 5xx, 408, 429) or "refused" (other 4xx)."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            "X-Wattwise-Delivery": uuid.uuid4().hex,
        }
        try:
            response = self._client.post(self.target.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            log.info("webhook %s: %s", self.target.url, e)
            return "retry"
        if response.is_success:
            return "delivered"
        log.info("webhook %s answered %d", self.target.url, response.status_code)
        # a 4xx other than timeout or rate limit will not change by sending it again
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            return "refused"
        return "retry"

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._client.close()


class WebhookNotifier:
    """An engine listener: finds material changes and hands them to each target's worker."""

    def __init__(
        self, settings: WebhookSettings, secret: bytes, clock: Clock, outcome: Outcome
    ) -> None:
        self._tracker = ChangeTracker(settings.cap_change_w, settings.setpoint_change_c)
        self._workers = [
            TargetWorker(t, settings, secret, clock, outcome) for t in settings.targets
        ]
        self._lock = threading.Lock()

    def __call__(self, snapshot: Snapshot) -> None:
        with self._lock:
            changes = self._tracker.changes(snapshot)
        if not changes:
            return
        for worker in self._workers:
            wanted: dict[str, object] = {
                k: v for k, v in changes.items() if k in worker.target.events
            }
            if wanted:
                worker.submit(_body(snapshot, wanted))

    def close(self, timeout_s: float = 2.0) -> None:
        for worker in self._workers:
            worker.close(timeout_s)


def _body(snapshot: Snapshot, changes: dict[str, object]) -> bytes:
    payload = {
        "event": "recommendations.changed",
        "computed_at": iso(snapshot.computed_at_ns),
        **changes,
    }
    return json.dumps(clean(payload), allow_nan=False, sort_keys=True).encode()
