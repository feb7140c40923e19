from __future__ import annotations

import pytest

from tests.conftest import REPO
from wattwise.collector.sim.calibrate_sweep import TOLERANCE, main, replay, worst_error
from wattwise.collector.sim.truths import TRUTHS

SWEEP = REPO / "tests/data/public/perseus-sosp24/stage_profile_gpt3-175b_a100_sxm_bf16.csv"


@pytest.mark.parametrize("truth", list(TRUTHS))
def test_the_a100_replays_the_published_clock_sweep_within_5_percent(truth: str) -> None:
    points = replay(SWEEP, truth=truth)
    assert len(points) == 38  # 1410 MHz down to 855 in 15 MHz steps
    assert worst_error(points) <= TOLERANCE


def test_power_falls_faster_than_the_clock_near_the_top_and_slower_below() -> None:
    points = {p.clock_mhz: p for p in replay(SWEEP)}
    near = points[1230.0]  # 0.87 of the top clock: ×0.77 power in the published sweep
    assert near.sim_power == pytest.approx(0.77, abs=0.02)
    assert near.sim_energy == pytest.approx(0.83, abs=0.02)
    assert points[855.0].sim_power > 0.45  # the floor: power ∝ clock below the knee


def test_calibration_script_passes_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SWEEP)]) == 0
    out = capsys.readouterr().out
    assert "| 1230 |" in out and "truth costly" in out
