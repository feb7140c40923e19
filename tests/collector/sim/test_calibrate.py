from __future__ import annotations

import pytest

from tests.conftest import H100_DATA
from wattwise.collector.sim.calibrate import (
    CLOCK_TOLERANCE,
    POWER_TOLERANCE,
    TEMP_TOLERANCE_C,
    Result,
    failures,
    load_phases,
    main,
    replay,
)


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return replay(load_phases(H100_DATA))


def test_every_phase_of_the_real_run_is_replayed(results: list[Result]) -> None:
    names = [r.phase.name for r in results]
    assert names[0] == "idle" and names[-1] == "cooldown"
    assert len(results) == 14


def test_power_per_phase_is_within_tolerance_of_the_real_h100(results: list[Result]) -> None:
    for r in results:
        assert abs(r.power_error) <= POWER_TOLERANCE, r.phase.name


def test_power_capped_sm_clock_is_within_tolerance(results: list[Result]) -> None:
    capped = [r for r in results if r.phase.name.startswith("matmul:8192:duty=1.00")]
    assert capped and abs(capped[0].clock_error) <= CLOCK_TOLERANCE
    for r in results:
        if r.phase.checks_clock:
            assert abs(r.clock_error) <= CLOCK_TOLERANCE, r.phase.name


def test_steady_temperature_rise_is_within_tolerance(results: list[Result]) -> None:
    checked = [r for r in results if r.phase.checks_temp]
    assert len(checked) >= 4
    for r in checked:
        assert abs(r.temp_error_c) <= TEMP_TOLERANCE_C, r.phase.name


def test_calibration_script_passes_and_prints_the_table(
    results: list[Result], capsys: pytest.CaptureFixture[str]
) -> None:
    assert failures(results) == []
    assert main([str(H100_DATA)]) == 0
    out = capsys.readouterr().out
    assert "| matmul:8192:duty=1.00 |" in out
