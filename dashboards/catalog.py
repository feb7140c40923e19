"""The seven wattwise dashboards, in the order an operator meets them."""

from __future__ import annotations

from .boards_infra import cooling, fleet_overview, jobs, node
from .boards_ops import agent_health, models, recommendations
from .build import Board


def all_boards() -> list[Board]:
    return [
        fleet_overview(),
        node(),
        jobs(),
        cooling(),
        recommendations(),
        models(),
        agent_health(),
    ]
