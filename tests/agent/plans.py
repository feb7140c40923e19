"""Answers of ``GET /v1/recommendations/power-budget`` as the optimizer writes them."""

from __future__ import annotations

import json

from tests.agent.http_peer import Answer

HOST = "r01-n01"


def cap(gpu: int, limit_w: float, host: str = HOST) -> dict[str, object]:
    """One entry of a plan's ``caps``, every field of ``BudgetCap``."""
    return {
        "host": host,
        "gpu": gpu,
        "job": "4242",
        "priority": "normal",
        "current_limit_w": 700.0,
        "planned_limit_w": limit_w,
        "default_limit_w": 700.0,
        "predicted_loss_pct": 3.2,
        "applied": False,
    }


def budget(scope: str, *caps: dict[str, object]) -> dict[str, object]:
    """One plan (``BudgetPlan.as_dict()``) holding ``caps``."""
    return {
        "scope": scope,
        "limit_w": 20000.0,
        "event_id": None,
        "gpus": 32,
        "predicted_peak_before_w": 23100.0,
        "predicted_peak_after_w": 19400.0,
        "guaranteed_max_w": 19900.0,
        "planned": bool(caps),
        "feasible": True,
        "work_lost_pct": 2.1,
        "caps": list(caps),
        "pause": [],
        "applied_share": 0.0,
        "reason": "the rack's predicted peak is over its limit",
    }


def plan_answer(*plans: dict[str, object]) -> Answer:
    body = {"computed_at": "2026-12-03T16:00:00Z", "count": len(plans), "items": list(plans)}
    return Answer(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


NO_PLAN = plan_answer()
"""The optimizer's answer when no scope needs caps."""
