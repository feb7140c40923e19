"""The budget experiment on a small oversubscribed twin with a site demand-response event."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.optimizer.evaluation.scenario_files import SMALL_BUDGET, scenario_from_toml
from wattwise.errors import ConfigError
from wattwise.optimizer.evaluation.results import ExperimentResult
from wattwise.optimizer.evaluation.runner import run_scenario, steps
from wattwise.optimizer.evaluation.scenario import Scenario


@pytest.fixture(scope="module")
def budget(small: Scenario) -> ExperimentResult:
    told: list[str] = []
    result = run_scenario(small, told.append)
    assert len(told) == steps(small) == 7
    (experiment,) = result.experiments
    return experiment


def test_no_caps_goes_over_and_every_planning_policy_holds_every_limit(
    budget: ExperimentResult,
) -> None:
    assert budget.policy("no caps").detail["over_samples"] > 0
    for name in ("wattwise", "uniform cap", "proportional", "oracle"):
        assert budget.policy(name).detail["over_samples"] == 0, name


def test_the_event_is_met_within_a_refresh_and_its_end_restores_default_limits(
    budget: ExperimentResult,
) -> None:
    ours = budget.policy("wattwise").detail
    assert ours["event_samples"] > 0 and ours["event_over_samples"] == 0
    # Planned its lead ahead and applied a poll later, the event is held from its start.
    assert ours["event_lead_in_samples"] > 0 and ours["event_lead_in_over_samples"] == 0
    assert budget.policy("no caps").detail["event_lead_in_over_samples"] > 0
    assert ours["after_event_samples"] > 0 and ours["after_event_capped_samples"] == 0
    assert budget.policy("no caps").detail["event_over_samples"] > 0


def test_holding_limits_costs_work_and_splitting_the_feed_evenly_costs_most(
    budget: ExperimentResult,
) -> None:
    lost = {p.policy: p.detail["work_lost_pct"] for p in budget.policies}
    assert lost["no caps"] == 0.0
    assert lost["uniform cap"] > max(lost["wattwise"], lost["oracle"]) > 0.0
    names = [t.name for t in budget.targets]
    assert any("1.2x the oracle" in n for n in names) and any("event met" in n for n in names)


def test_a_budget_event_on_an_unknown_scope_is_a_config_error(tmp_path: Path) -> None:
    bad = SMALL_BUDGET.replace('scope = "site"', 'scope = "rack:r99"')
    with pytest.raises(ConfigError, match="r99"):
        scenario_from_toml(tmp_path, "bad", bad)


def test_the_budget_experiment_needs_a_budget_section(tmp_path: Path) -> None:
    text = SMALL_BUDGET.split("[budget]")[0]
    with pytest.raises(ConfigError, match="budget"):
        scenario_from_toml(tmp_path, "no-budget", text)
