"""Power budgets as the planner sees them and the plans it returns (frozen plain values).

A scope is ``site``, ``zone:<name>`` or ``rack:<name>``: every node of it counts, at its power
supplies. Limits come from the configuration or from a timed :class:`PowerEvent` (a demand-
response window, a feed under maintenance) that lowers a scope's limit while it lasts.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

ScopeKind = Literal["site", "zone", "rack"]
SCOPE_PATTERN = re.compile(r"^(site|(zone|rack):[^\s:]+)$")
"""``site``, ``zone:<name>`` or ``rack:<name>``."""


def scope_kind(scope: str) -> ScopeKind:
    """The kind of a scope written as :data:`SCOPE_PATTERN` allows (ValueError otherwise)."""
    if not SCOPE_PATTERN.match(scope):
        raise ValueError(f"scope {scope!r} is not site, zone:<name> or rack:<name>")
    kind = scope.split(":", 1)[0]
    return "site" if kind == "site" else "zone" if kind == "zone" else "rack"


def scope_name(scope: str) -> str:
    """The zone or rack a scope names ('' for the site)."""
    return scope.split(":", 1)[1] if ":" in scope else ""


@dataclass(frozen=True)
class PowerEvent:
    """A scope's limit lowered (or raised) from ``start_ns`` to ``end_ns``."""

    id: str
    scope: str
    limit_w: float
    start_ns: int
    end_ns: int
    reason: str
    created_ns: int
    cancelled_ns: int | None = None

    def active(self, now_ns: int, lead_ns: int = 0) -> bool:
        """In force at ``now_ns``, or due to start within ``lead_ns`` of it."""
        return self.cancelled_ns is None and self.start_ns - lead_ns <= now_ns < self.end_ns

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class BudgetScope:
    """A limit in force now: from the configuration, or from the event ``event_id``."""

    scope: str
    limit_w: float
    event_id: str | None = None

    @property
    def kind(self) -> ScopeKind:
        return scope_kind(self.scope)

    @property
    def name(self) -> str:
        return scope_name(self.scope)


@dataclass(frozen=True)
class BudgetCap:
    """One GPU's limit under a plan."""

    host: str
    gpu: int
    job: str | None
    priority: str
    current_limit_w: float
    planned_limit_w: float
    default_limit_w: float
    predicted_loss_pct: float
    """Share of the job's work (at default limits) the planned limit costs it, in %."""
    applied: bool
    """Whether the GPU enforces the planned limit now (its reported enforced limit)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class BudgetPlan:
    """What holds one scope under its limit through the next refresh interval."""

    scope: str
    limit_w: float
    event_id: str | None
    gpus: int
    predicted_peak_before_w: float
    """The interval's predicted peak (its ``peak_quantile``) at the limits in force now."""
    predicted_peak_after_w: float
    """The same under the planned caps."""
    guaranteed_max_w: float
    """The most the scope can draw under the planned caps, whatever work starts: the caps
    summed at the power supplies plus the nodes' other power at its high percentile."""
    planned: bool
    """False when the scope stays under its limit at default limits (no caps needed)."""
    feasible: bool
    """False when even every GPU at its minimum limit cannot hold the limit."""
    work_lost_pct: float
    """Predicted share of the scope's work (at default limits) the caps cost, in %."""
    caps: tuple[BudgetCap, ...]
    """GPUs whose planned limit is under their default limit."""
    pause: tuple[str, ...]
    """When infeasible: the jobs (or GPUs) to pause or move, least important first."""
    applied_share: float
    """Share of the capped GPUs that enforce their planned limit now (1 without caps)."""
    reason: str

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["caps"] = [c.as_dict() for c in self.caps]
        out["pause"] = list(self.pause)
        return out


class ActiveEvents(Protocol):
    """Where the planner learns which timed events are in force."""

    def active(self, now_ns: int, lead_ns: int = 0) -> list[PowerEvent]:
        """Events in force at ``now_ns`` (not cancelled, started, not ended), and those due
        to start within ``lead_ns``."""
        ...


def scopes_in_force(configured: dict[str, float], events: list[PowerEvent]) -> list[BudgetScope]:
    """Each scope's limit now: an event in force replaces the configured limit (the lowest
    of several events wins), and an event may limit a scope the configuration does not."""
    out = {scope: BudgetScope(scope, limit) for scope, limit in configured.items()}
    for event in sorted(events, key=lambda e: -e.limit_w):
        out[event.scope] = BudgetScope(event.scope, event.limit_w, event.id)
    return list(out.values())
