"""One settings loader for every component: each reads its own environment namespace."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from wattwise.agent.config import load_config
from wattwise.errors import ConfigError
from wattwise.optimizer.service.settings import load_optimizer_config

AGENT_FILE = '[influx]\nurl = "http://influx:8086"\n'


def test_agent_ignores_the_optimizers_variables(tmp_path: Path) -> None:
    # Regression: WATTWISE_STORE__URL (an optimizer setting) made `agent check-config` exit 2.
    path = tmp_path / "agent.toml"
    path.write_text(AGENT_FILE)
    env = {
        "WATTWISE_OPTIMIZER_STORE__URL": "http://optimizer-store:8086",
        "WATTWISE_OPTIMIZER_STORE__KIND": "embedded",
        "WATTWISE_AGENT_INFLUX__DATABASE": "agentdb",
    }
    config = load_config(path, None, env)
    assert config.store.kind == "influx"  # the optimizer's store.kind did not leak in
    assert config.influx.database == "agentdb"


def test_optimizer_ignores_the_agents_variables() -> None:
    env = {
        "WATTWISE_AGENT_STORE__KIND": "embedded",
        "WATTWISE_AGENT_INFLUX__URL": "http://agent-influx:8086",
        "WATTWISE_OPTIMIZER_STORE__URL": "http://optimizer-store:8086",
    }
    config = load_optimizer_config(None, None, env)
    assert config.store.kind == "influx"
    assert config.store.url == "http://optimizer-store:8086"


def test_a_variable_without_a_component_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        config = load_optimizer_config(None, None, {"WATTWISE_STORE__URL": "http://old:8086"})
    assert config.store.url == "http://127.0.0.1:8086"
    assert "WATTWISE_STORE__URL is ignored" in caplog.text
    assert "WATTWISE_OPTIMIZER_<SECTION>__<KEY>" in caplog.text


def test_an_unknown_key_in_the_components_own_namespace_is_still_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(AGENT_FILE)
    with pytest.raises(ConfigError, match=r"influx\.ulr"):
        load_config(path, None, {"WATTWISE_AGENT_INFLUX__ULR": "http://typo:8086"})


def test_a_rack_limit_given_for_placement_or_budgets_binds_both() -> None:
    config = load_optimizer_config(
        None,
        {
            "placement.rack_budgets_w": {"r01": 40000.0, "r02": 30000.0},
            "budgets.rack_w": {"r01": 36000.0, "r03": 20000.0},
        },
    )
    both = {"r01": 36000.0, "r02": 30000.0, "r03": 20000.0}
    assert config.placement.rack_budgets_w == both
    assert config.budgets.rack_w == both
    assert config.budgets.configured()["rack:r02"] == 30000.0


def test_a_budget_limit_that_is_not_positive_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.zone_w"):
        load_optimizer_config(None, {"budgets.zone_w": {"z1": 0.0}})


def test_a_rule_with_a_misspelt_key_names_that_key_before_the_missing_one() -> None:
    # Regression: "budgets.priorities.0.priority: {'match': 'x'} is not allowed; it must be
    # Field required", about the key left out rather than the one misspelt.
    with pytest.raises(ConfigError) as error:
        load_optimizer_config(None, {"budgets.priorities": [{"match": "x"}]})
    assert error.value.key == "budgets.priorities.0.match"
    assert "it must be a known key" in str(error.value)


def test_a_required_key_left_out_is_named_as_missing() -> None:
    with pytest.raises(ConfigError) as error:
        load_optimizer_config(None, {"budgets.priorities": [{"jobs": ["train-*"]}]})
    assert str(error.value).startswith(
        "budgets.priorities.0.priority: nothing was given; it must be set: the key is required"
    )
