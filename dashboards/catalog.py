"""The eight wattwise dashboards, in the order an operator meets them."""

from __future__ import annotations

from wattwise.dashboards.boards_health import gpu_health
from wattwise.dashboards.boards_infra import fleet_overview, node
from wattwise.dashboards.boards_ops import agent_health, models, recommendations
from wattwise.dashboards.boards_work import cooling, jobs
from wattwise.dashboards.build import Board


def all_boards() -> list[Board]:
    return [
        fleet_overview(),
        node(),
        gpu_health(),
        jobs(),
        cooling(),
        recommendations(),
        models(),
        agent_health(),
    ]
