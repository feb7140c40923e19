"""Leave one workload out on the published sweeps small enough to fit in a test; the Zeus files
take minutes and are checked by bench/cap_sweeps.py (figures in docs/grounding.md)."""

import numpy as np

from tests.optimizer.models.test_sweeps import PUBLIC
from wattwise.optimizer.models.sweep_fit import Check, held_at_top, leave_one_out
from wattwise.optimizer.models.sweeps import Sweep, load_sweeps
from wattwise.optimizer.recommend.gain import pick_bounded


def _errors(checks: list[Check]) -> tuple[np.ndarray, np.ndarray]:
    thr, energy = [], []
    for c in checks:
        s = c.sweep
        scored = s.throughput_rel >= 1 / 1.15
        thr += np.abs(c.typical.throughput_rel - s.throughput_rel)[scored].tolist()
        energy += np.abs(c.typical.energy_rel - s.energy_rel)[scored].tolist()
    return np.array(thr), np.array(energy)


def _least_energy_hits(checks: list[Check]) -> int:
    hits = 0
    for c in checks:
        s = c.sweep
        step = np.min(np.abs(np.diff(s.settings)))
        measured = s.settings[np.argmin(s.energy_rel)]
        hits += abs(measured - s.settings[np.argmin(c.typical.energy_rel)]) <= step
    return hits


def _worst_underprediction(checks: list[Check]) -> float:
    worst = -np.inf
    for c in checks:
        worst_case = 1 / c.cautious.throughput_rel - 1
        expected = 1 / c.typical.throughput_rel - 1
        saving = 1 - c.typical.energy_rel
        chosen = pick_bounded(expected, saving, worst_case, slowdown_bound=0.05, gain_ratio=1.0)
        k = max(int(chosen), 0)
        measured = 1 / c.sweep.throughput_rel[k] - 1
        worst = max(worst, measured - worst_case[k])
    return float(worst)


def test_a100_pcie_pipelines_predicted_from_the_other_models() -> None:
    checks = leave_one_out(load_sweeps(PUBLIC / "perseus-sosp24" / "A100_pcie_zeus_global.csv"))
    thr, energy = _errors(checks)
    assert thr.max() < 0.04 and energy.max() < 0.05
    assert np.mean(thr <= 0.03) >= 0.85 and np.mean(energy <= 0.03) >= 0.9
    assert _least_energy_hits(checks) == 5
    assert _worst_underprediction(checks) <= 0.02


def test_a_pipeline_runs_at_its_slowest_stage_pace() -> None:
    checks = leave_one_out(load_sweeps(PUBLIC / "perseus-sosp24" / "A100_pcie_zeus_local.csv"))
    assert _worst_underprediction(checks) <= 0.02
    assert _least_energy_hits(checks) >= 5


def test_a100_sxm_clock_sweep_predicted_within_three_points() -> None:
    every = load_sweeps(PUBLIC / "perseus-sosp24" / "stage_profile_gpt3-175b_a100_sxm_bf16.csv")
    some: list[Sweep] = [s for s in every if s.workload[6] in "0246"]
    checks = leave_one_out(some)
    thr, energy = _errors(checks)
    assert thr.max() <= 0.03 and np.mean(energy <= 0.03) >= 0.99
    assert _least_energy_hits(checks) == len(some)


def test_a40_stages_held_at_its_limit_on_top_are_predicted_within_three_points() -> None:
    # Regression: the A40's GPT-3 stages draw its 300 W limit at every clock from 1740 down
    # to ~1450 MHz in the same time; taken as wanting only what they drew, they were
    # predicted to save energy from the first step down, and 38 % of the energy points
    # missed by more than 3 (up to 6.1).
    every = load_sweeps(PUBLIC / "perseus-sosp24" / "stage_profile_gpt3-175b_a40_bf16.csv")
    some: list[Sweep] = [s for s in every if s.workload[6] in "0246"]
    assert all(held_at_top(s) for s in some)
    checks = leave_one_out(some)
    thr, energy = _errors(checks)
    assert np.mean(energy <= 0.03) >= 0.95 and energy.max() < 0.04
    assert np.mean(thr <= 0.03) >= 0.9
    assert _worst_underprediction(checks) <= 0.02
