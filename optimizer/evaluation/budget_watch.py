"""The limits in force during a budget scenario, and a watch on the twin's true power against
them: samples over each rack, zone and site limit, and how timed events were met."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.evaluation.caps import _limits
from wattwise.optimizer.evaluation.replica import Replica
from wattwise.optimizer.evaluation.scenario import BudgetEvent, Scenario
from wattwise.optimizer.recommend.budget_types import BudgetScope

EPS_S = 1e-6


def configured(scenario: Scenario) -> dict[str, float]:
    """Scope → limit from the scenario file (racks' ``budget_w``, zone and site limits)."""
    out = {f"rack:{name}": limit for name, limit in scenario.rack_budgets_w.items()}
    if scenario.budget is not None:
        out.update({f"zone:{z}": w for z, w in scenario.budget.zone_w.items()})
        if scenario.budget.site_w is not None:
            out["site"] = scenario.budget.site_w
    return out


def active_events(scenario: Scenario, elapsed_s: float, lead_s: float = 0.0) -> list[BudgetEvent]:
    """Events in force ``elapsed_s`` after the policies start, or starting within ``lead_s``."""
    events = scenario.budget.events if scenario.budget else ()
    return [e for e in events if e.start_s - lead_s - EPS_S <= elapsed_s < e.end_s - EPS_S]


def event_edges(scenario: Scenario, lead_s: float) -> list[float]:
    """When the service plans again for an event: ``lead_s`` before its start, and its end."""
    events = scenario.budget.events if scenario.budget else ()
    return sorted({max(0.0, e.start_s - lead_s) for e in events} | {e.end_s for e in events})


def scopes_at(scenario: Scenario, elapsed_s: float, lead_s: float = 0.0) -> list[BudgetScope]:
    """The limits in force ``elapsed_s`` after the policies start (lowest event wins), with
    events counted from ``lead_s`` before they start (as the service plans them)."""
    out = {scope: BudgetScope(scope, limit) for scope, limit in configured(scenario).items()}
    for k, event in sorted(
        enumerate(active_events(scenario, elapsed_s, lead_s)), key=lambda e: -e[1].limit_w
    ):
        out[event.scope] = BudgetScope(event.scope, event.limit_w, f"event-{k}")
    return list(out.values())


@dataclass
class Watch:
    """True power against the limits in force, sampled at every telemetry step of the
    measured horizon."""

    scenario: Scenario
    samples: int = 0
    over: dict[str, int] = field(default_factory=lambda: {"rack": 0, "zone": 0, "site": 0})
    worst_share: float = 0.0
    event_samples: int = 0
    """Samples inside an event from one refresh after its start."""
    event_over: int = 0
    lead_in_samples: int = 0
    """Samples inside an event before the first refresh after its start: what the plans
    made ahead of it (``budgets.event_lead_s``) hold."""
    lead_in_over: int = 0
    after_event_samples: int = 0
    """Samples from one refresh after an event's end, before the next begins."""
    after_event_capped: int = 0
    """Of those, samples where some GPU was not at its default limit."""

    def sample(self, replica: Replica, elapsed_s: float) -> None:
        s = self.scenario
        if elapsed_s < s.settle_s - EPS_S:
            return
        self.samples += 1
        power = _scope_power(replica)
        for scope in scopes_at(s, elapsed_s):
            if _leading_in(s, scope, elapsed_s):
                continue
            share = power[scope.scope] / scope.limit_w
            self.worst_share = max(self.worst_share, share)
            if share > 1.0:
                self.over[scope.kind] += 1
        events = s.budget.events if s.budget else ()
        for event in events:
            over = int(power[event.scope] > event.limit_w)
            if event.start_s + s.refresh_s - EPS_S <= elapsed_s < event.end_s:
                self.event_samples += 1
                self.event_over += over
            elif event.start_s - EPS_S <= elapsed_s < event.end_s:
                self.lead_in_samples += 1
                self.lead_in_over += over
        ended = [e for e in events if elapsed_s >= e.end_s + s.refresh_s - EPS_S]
        if ended and not active_events(s, elapsed_s):
            self.after_event_samples += 1
            default = _limits(replica)[2]
            self.after_event_capped += int(np.any(replica.fleet.limit_w < default - 1e-6))

    @property
    def over_total(self) -> int:
        return sum(self.over.values())


def _leading_in(scenario: Scenario, scope: BudgetScope, elapsed_s: float) -> bool:
    """An event's limit before the first refresh after its start: no plan can hold it yet
    (the event target counts these samples on their own)."""
    if scope.event_id is None:
        return False
    return any(
        e.scope == scope.scope and elapsed_s < e.start_s + scenario.refresh_s - EPS_S
        for e in active_events(scenario, elapsed_s)
    )


def _scope_power(replica: Replica) -> dict[str, float]:
    """True input power of every rack, zone and the site now."""
    fleet, lay = replica.fleet, replica.fleet.layout
    node = fleet.nodes.node_power_w
    racks = np.bincount(lay.rack_of_node, weights=node, minlength=len(lay.racks))
    zones = np.bincount(lay.zone_of_node, weights=node, minlength=len(lay.zones))
    out = {f"rack:{r}": float(w) for r, w in zip(lay.racks, racks, strict=True)}
    out.update({f"zone:{z}": float(w) for z, w in zip(lay.zones, zones, strict=True)})
    out["site"] = float(node.sum())
    return out
