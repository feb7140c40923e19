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
def test_decode_site_caps_save_a_third_of_the_oracle_and_none_overshoots(
    tmp_path: Path, seed: int
) -> None:
    """The oracle knows the twin's truth; wattwise bounds the slowdown on its cautious curve,
    fitted on real GPUs, which is steeper than the twin's H100. That caution costs savings:
    wattwise saves 3.2 and 2.6 % (limits down to 430 W, 1.7 % slower at most) where the
    oracle saves 7.4 and 6.6 % (down to 385 W, 4.9 % slower). Before the grounded curves it
    sat within a point of the oracle, because both shared the twin's physics."""
    result = _caps(tmp_path, seed)
    ours, oracle = result.policy("wattwise"), result.policy("oracle")

    assert ours.saving_pct > oracle.saving_pct / 3
    assert ours.detail["gpu_periods_over_bound"] == 0
    assert ours.detail["worst_gpu_slowdown_pct"] <= 100 * 0.05
