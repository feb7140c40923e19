"""The cooling experiment in steady state: wattwise ramps first, then every policy is measured
over the same later window, and wattwise keeps the twin's true inlets within 27 °C there."""

from __future__ import annotations

import pytest

from tests.optimizer.evaluation.scenario_files import scenario_from_toml
from wattwise.optimizer.evaluation.cooling import (
    MAX_RAMP_REFRESHES,
    WattwiseCooling,
    ramp_s,
    run_cooling,
    steady_settle_s,
)
from wattwise.optimizer.evaluation.replica import Replica, run_for, warm_replica
from wattwise.optimizer.evaluation.results import ExperimentResult
from wattwise.optimizer.evaluation.scenario import Scenario

SMALL_ROW = """
name = "small-row"
seed = 4
warmup_s = 600
settle_s = 150
duration_s = 300
refresh_s = 150
read_every_s = 15
[[racks]]
name = "r01"
zone = "z1"
nodes = 2
gpus_per_node = 4
[[racks]]
name = "r02"
zone = "z1"
nodes = 2
gpus_per_node = 4
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario_from_toml(tmp_path_factory.mktemp("scenarios"), "small-row", SMALL_ROW)


@pytest.fixture(scope="module")
def base(scenario: Scenario) -> Replica:
    return warm_replica(scenario)


@pytest.fixture(scope="module")
def experiment(base: Replica, scenario: Scenario) -> tuple[ExperimentResult, list[str]]:
    labels: list[str] = []
    return run_cooling(base, scenario, labels.append), labels


def test_wattwise_takes_full_steps_until_the_ramp_ends_and_none_then(
    base: Replica, scenario: Scenario
) -> None:
    ramp = ramp_s(base, scenario)
    assert ramp is not None and ramp > 0
    replica, policy = base.clone(), WattwiseCooling()
    for _ in range(round(ramp / scenario.refresh_s)):
        policy.act(replica)
        assert policy.ramping
        assert max(policy.steps_c.values()) == pytest.approx(policy.settings.max_step_c)
        run_for(replica, scenario.refresh_s, scenario.read_every_s)
    policy.act(replica)
    assert not policy.ramping


def test_every_policy_is_measured_over_the_same_window_after_the_ramp(
    base: Replica, scenario: Scenario, experiment: tuple[ExperimentResult, list[str]]
) -> None:
    result, labels = experiment
    ramp = ramp_s(base, scenario)
    assert ramp is not None
    settle = {p.detail["settle_s"] for p in result.policies}
    assert settle == {ramp + scenario.refresh_s}
    assert {p.detail["ramp_s"] for p in result.policies} == {ramp}
    assert f"ramp from 18 °C took {ramp:.0f} s" in result.targets[0].text
    assert labels[0] == "cooling: wattwise ramp"


def test_wattwise_keeps_every_true_inlet_within_27_c_and_saves_in_steady_state(
    experiment: tuple[ExperimentResult, list[str]],
) -> None:
    result, _ = experiment
    ours, oracle = result.policy("wattwise"), result.policy("oracle")
    assert ours.inlet_within_pct == 100.0 and ours.max_inlet_c <= 27.0
    assert oracle.inlet_within_pct >= 99.9
    assert 0.0 < ours.saving_pct <= oracle.saving_pct + 0.5
    assert ours.setting.startswith("z1 ") and ours.setting.endswith(" °C")


def test_measurement_waits_for_the_ramp_but_never_starts_before_settle_s(
    scenario: Scenario,
) -> None:
    refresh = scenario.refresh_s
    assert steady_settle_s(0.0, scenario) == max(scenario.settle_s, refresh)
    assert steady_settle_s(6 * refresh, scenario) == 7 * refresh
    unfinished = steady_settle_s(None, scenario)
    assert unfinished == (MAX_RAMP_REFRESHES + 1) * refresh
    longer = scenario.model_copy(update={"settle_s": 20 * refresh})
    assert steady_settle_s(6 * refresh, longer) == 20 * refresh
