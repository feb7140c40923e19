"""The smallest scenario end to end: invariants on the twin's truth, and determinism per seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.optimizer.evaluation.scenario_files import scenario_from_toml
from wattwise.errors import ConfigError
from wattwise.optimizer.evaluation.report import markdown, tables, to_json
from wattwise.optimizer.evaluation.results import ScenarioResult
from wattwise.optimizer.evaluation.runner import run_scenario
from wattwise.optimizer.evaluation.scenario import Scenario, load_scenario

TINY = """
name = "tiny"
seed = 3
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
budget_w = 12000
[[racks]]
name = "r02"
zone = "z1"
nodes = 2
gpus_per_node = 4
budget_w = 12000
[placement]
jobs = 2
gpus_per_job = 4
background_busy_share = 0.25
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return scenario_from_toml(tmp_path_factory.mktemp("scenarios"), "tiny", TINY)


@pytest.fixture(scope="module")
def result(tiny: Scenario) -> ScenarioResult:
    return run_scenario(tiny)


def test_wattwise_placement_exceeds_no_rack_budget_and_places_every_job(
    result: ScenarioResult,
) -> None:
    placement = next(e for e in result.experiments if e.name == "placement")
    ours = placement.policy("wattwise")
    assert ours.rack_over_samples == 0
    assert ours.worst_rack_share <= 1.0
    assert ours.detail["jobs_placed"] == 2


def test_wattwise_cooling_keeps_inlets_within_27_c(result: ScenarioResult) -> None:
    cooling = next(e for e in result.experiments if e.name == "cooling")
    ours = cooling.policy("wattwise")
    assert ours.inlet_within_pct >= 99.9
    assert ours.max_inlet_c <= 27.0
    assert cooling.policy("oracle").saving_pct >= ours.saving_pct - 1.0


def test_applied_caps_stay_inside_each_gpus_allowed_range(result: ScenarioResult) -> None:
    caps = next(e for e in result.experiments if e.name == "caps")
    for policy in caps.policies:
        assert 200.0 <= policy.detail["lowest_limit_w"] <= policy.detail["highest_limit_w"] <= 700.0
    assert caps.policy("default limits").saving_pct == 0.0
    assert caps.policy("static 80 % cap").setting == "limits 560–560 W"


def test_same_seed_gives_the_same_result(tiny: Scenario, result: ScenarioResult) -> None:
    again = run_scenario(tiny)

    def without_time(r: ScenarioResult) -> object:
        doc = json.loads(to_json(r))
        doc.pop("elapsed_s")
        return doc

    assert without_time(again) == without_time(result)


def test_report_has_a_row_per_target_and_strict_json(result: ScenarioResult) -> None:
    table = markdown([result])
    targets = sum(len(e.targets) for e in result.experiments)
    assert table.count("\n| tiny |") == targets == 7
    assert json.loads(to_json(result))["scenario"] == "tiny"


def test_tables_cut_no_number_and_name_what_every_policy_shares(
    result: ScenarioResult,
) -> None:
    # Regression: eight columns at 80 characters cut "100.00" to "100.…", wrapped each
    # policy's setting over four lines and its name over two.
    console = Console(width=80, record=True)
    console.print(tables(result))
    shown = console.export_text()
    assert "…" not in shown
    for e in result.experiments:
        for p in e.policies:
            assert f"│ {p.policy} " in shown
            assert f"{p.saving_pct:.2f}" in shown and f"{p.slowdown_pct:.2f}" in shown
            if p.setting:
                assert f"{p.policy}: {p.setting}" in " ".join(shown.split())
        if len({p.inlet_within_pct for p in e.policies}) == 1:
            inlet = f"{e.policies[0].inlet_within_pct:.2f}"
            assert f"every policy: inlet ≤ 27 °C % {inlet}" in shown


def test_bad_scenario_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("nodes = 2", "nodes = 0", 1))
    with pytest.raises(ConfigError, match=r"racks\.0\.nodes"):
        load_scenario(path)


def test_shipped_scenarios_load(tmp_path: Path) -> None:
    shipped = sorted(Path("scenarios").glob("*.toml"))
    assert len(shipped) >= 3
    names = {load_scenario(p).name for p in shipped}
    assert names == {p.stem for p in shipped}
