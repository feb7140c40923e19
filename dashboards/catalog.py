"""The seven wattwise dashboards, in the order an operator meets them."""

from __future__ import annotations

from .boards_infra import fleet_overview, node
from .boards_ops import agent_health, models, recommendations
from .boards_work import cooling, jobs
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
