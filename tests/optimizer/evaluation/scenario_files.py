"""Scenarios written from TOML text, as an operator's file would be, for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

from wattwise.optimizer.evaluation.scenario import Scenario, load_scenario


def scenario_from_toml(directory: Path, name: str, text: str) -> Scenario:
    """Write ``text`` to ``directory/name.toml`` and load it through the real loader."""
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


SMALL_BUDGET = """
name = "small-budget"
seed = 5
busy_share = 0.9
warmup_s = 600
settle_s = 120
duration_s = 720
refresh_s = 120
read_every_s = 15
experiments = ["budget"]

[[racks]]
name = "r01"
zone = "z1"
nodes = 2
budget_w = 20000

[[racks]]
name = "r02"
zone = "z1"
nodes = 2
budget_w = 20000

[budget]
site_w = 30000

[[budget.events]]
scope = "site"
limit_w = 17000
start_s = 240
end_s = 480
"""
"""Two racks under a site limit with one demand-response event (240–480 s): the budget
experiment's tests."""
