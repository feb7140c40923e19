"""A scope's plan as the operator reads it: peaks before and after, the caps, the work they
cost, and when nothing fits, what to pause."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.node_other import NodeOther
from wattwise.optimizer.recommend.budget_fleet import Fleet
from wattwise.optimizer.recommend.budget_types import BudgetCap, BudgetPlan, BudgetScope
from wattwise.optimizer.recommend.settings import BudgetSettings
from wattwise.optimizer.telemetry import Floats


@dataclass(frozen=True)
class Outcome:
    """The solved limits, and each GPU's job's pace under them."""

    limit_w: Floats
    pace: Floats


def plan_of(
    fleet: Fleet,
    outcome: Outcome,
    scope: BudgetScope,
    members: np.ndarray,
    *,
    other: float,
    before: float,
    after: float,
    planned: bool,
    feasible: bool,
    nodes: NodeOther,
    settings: BudgetSettings,
) -> BudgetPlan:
    limit = outcome.limit_w[members]
    default = fleet.default_w[members]
    guaranteed = other + nodes.slope * float(limit.sum())
    util = fleet.util[members]
    lost = util * (1.0 - 1.0 / outcome.pace[members])
    lost_pct = 100.0 * float(lost.sum()) / max(float(util.sum()), 1e-12)
    caps = tuple(_caps(fleet, outcome, members, settings)) if planned else ()
    applied = float(np.mean([c.applied for c in caps])) if caps else 1.0
    pause = () if feasible or not planned else _pause(fleet, members, other, scope, nodes, settings)
    return BudgetPlan(
        scope=scope.scope,
        limit_w=scope.limit_w,
        event_id=scope.event_id,
        gpus=int(members.size),
        predicted_peak_before_w=before,
        predicted_peak_after_w=after if planned else before,
        guaranteed_max_w=guaranteed if planned else other + nodes.slope * float(default.sum()),
        planned=planned,
        feasible=feasible,
        work_lost_pct=lost_pct if planned else 0.0,
        caps=caps,
        pause=pause,
        applied_share=applied,
        reason=_reason(
            scope, before, after, planned, feasible, caps, lost_pct, guaranteed, pause, settings
        ),
    )


def _caps(
    fleet: Fleet, outcome: Outcome, members: np.ndarray, settings: BudgetSettings
) -> list[BudgetCap]:
    out = []
    for i in members.tolist():
        planned = float(outcome.limit_w[i])
        if planned >= fleet.default_w[i] - 0.5:
            continue
        s = fleet.states[i]
        name = fleet.unit_names[fleet.unit[i]]
        enforced = s.enforced_limit_w if np.isfinite(s.enforced_limit_w) else s.power_limit_w
        out.append(
            BudgetCap(
                host=s.host,
                gpu=s.gpu,
                job=None if name == f"{s.host}/{s.gpu}" else name,
                priority=fleet.priority[fleet.unit[i]],
                current_limit_w=float(fleet.current_w[i]),
                planned_limit_w=planned,
                default_limit_w=float(fleet.default_w[i]),
                predicted_loss_pct=100.0 * (1.0 - 1.0 / float(outcome.pace[i])),
                applied=bool(abs(enforced - planned) <= settings.step_w / 2),
            )
        )
    return out


def _pause(
    fleet: Fleet,
    members: np.ndarray,
    other: float,
    scope: BudgetScope,
    nodes: NodeOther,
    settings: BudgetSettings,
) -> tuple[str, ...]:
    """Jobs whose pausing (their GPUs idle) lets the rest fit at minimum limits: the least
    important first, and among equals those holding the most watts at minimum."""
    room = ((1.0 - settings.margin_share) * scope.limit_w - other) / nodes.slope
    held = float(fleet.low_w[members].sum())
    units = np.unique(fleet.unit[members])
    busy = [u for u in units.tolist() if fleet.util[members][fleet.unit[members] == u].sum() > 0]
    freed = {
        u: float((fleet.low_w[i] - fleet.idle_w[i]).sum())
        for u in busy
        for i in [members[fleet.unit[members] == u]]
    }
    out = []
    for u in sorted(busy, key=lambda u: (fleet.weight[u], -freed[u])):
        if held <= room:
            break
        held -= freed[u]
        out.append(fleet.unit_names[u])
    return tuple(out)


def _reason(
    scope: BudgetScope,
    before: float,
    after: float,
    planned: bool,
    feasible: bool,
    caps: tuple[BudgetCap, ...],
    lost_pct: float,
    guaranteed: float,
    pause: tuple[str, ...],
    settings: BudgetSettings,
) -> str:
    source = f"event {scope.event_id}: " if scope.event_id else ""
    limit_kw, before_kw = scope.limit_w / 1000.0, before / 1000.0
    if not planned:
        return (
            f"{source}predicted peak {before_kw:.1f} kW is under "
            f"{100 * settings.plan_above_share:g} % of the {limit_kw:.1f} kW limit: default "
            "limits hold it"
        )
    if not feasible:
        what = ", ".join(pause) if pause else "work elsewhere"
        return (
            f"{source}even every GPU at its minimum limit may draw more than the "
            f"{limit_kw:.1f} kW limit: all at minimum; pause or move {what}"
        )
    return (
        f"{source}predicted peak {before_kw:.1f} kW would reach the {limit_kw:.1f} kW limit: "
        f"{len(caps)} GPUs capped, {lost_pct:.1f} % of the work lost, predicted peak "
        f"{after / 1000.0:.1f} kW ({guaranteed / 1000.0:.1f} kW if every GPU drew its cap)"
    )
