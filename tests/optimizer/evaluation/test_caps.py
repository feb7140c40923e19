"""The caps experiment on a small inference site, against the oracle on the twin's truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.optimizer.evaluation.scenario_files import scenario_from_toml
from wattwise.optimizer.evaluation.caps import DefaultCaps, OracleCaps, WattwiseCaps, judge_caps
from wattwise.optimizer.evaluation.replica import run_policy, warm_replica
from wattwise.optimizer.evaluation.results import ExperimentResult

DECODE_SITE = """
name = "decode-site"
seed = {seed}
busy_share = 0.9
warmup_s = 900
settle_s = 300
duration_s = 900
refresh_s = 300
read_every_s = 15
[[racks]]
name = "h01"
zone = "z1"
nodes = 3
[[workloads]]
name = "llm_decode"
weight = 4.0
compute = 0.6
memory = 1.0
memory_bound = 0.85
duty_min = 0.7
duty_max = 1.0
mean_length_s = 1800
mem_fraction = 0.9
[[workloads]]
name = "memory_bound"
[[workloads]]
name = "inference"
[[workloads]]
name = "training"
"""
"""LLM decoding (HBM-bound with busy SMs) and the default mix, as in memory-bound-heavy."""


def _caps(tmp_path: Path, seed: int) -> ExperimentResult:
    scenario = scenario_from_toml(tmp_path, f"decode-{seed}", DECODE_SITE.format(seed=seed))
    base = warm_replica(scenario)
    bound = scenario.slowdown_bound
    policies = (DefaultCaps(), WattwiseCaps(bound), OracleCaps(bound))
    runs = {p.name: run_policy(base, p, scenario, record=p.name == "wattwise") for p in policies}
    return judge_caps(runs, bound)


@pytest.mark.parametrize("seed", [23, 25])
def test_decode_site_caps_save_within_a_point_of_the_oracle_and_none_overshoots(
    tmp_path: Path, seed: int
) -> None:
    """Before the sharper roofline, the fitted-floor test and the newest-load estimate this
    site sat 1.35 and 1.19 points behind the oracle (now 0.6), and seed 23 slowed one
    GPU-period 6.1 %."""
    result = _caps(tmp_path, seed)
    ours, oracle = result.policy("wattwise"), result.policy("oracle")

    assert ours.saving_pct > 0.0
    assert oracle.saving_pct - ours.saving_pct <= 1.0
    assert ours.detail["gpu_periods_over_bound"] == 0
    assert ours.detail["worst_gpu_slowdown_pct"] <= 100 * 0.05 + 1.0
