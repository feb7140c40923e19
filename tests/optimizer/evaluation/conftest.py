"""The small budget scenario the budget experiment's tests share."""

from __future__ import annotations

import pytest

from tests.optimizer.evaluation.scenario_files import SMALL_BUDGET, scenario_from_toml
from wattwise.optimizer.evaluation.scenario import Scenario


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario_from_toml(tmp_path_factory.mktemp("budget"), "small-budget", SMALL_BUDGET)
