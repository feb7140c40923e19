"""The page's words: refusals counted by reason."""

from __future__ import annotations

from dataclasses import replace

from wattwise.optimizer.recommend.types import CapRecommendation, Evidence
from wattwise.optimizer.report.build import Summary
from wattwise.optimizer.report.html import _summary_table, refusal_counts

BASE = CapRecommendation(
    host="h",
    gpu=0,
    model="H100",
    current_limit_w=700.0,
    recommended_limit_w=None,
    min_limit_w=200.0,
    max_limit_w=700.0,
    saving_w=0.0,
    saving_pct=0.0,
    slowdown_pct=0.0,
    objective="least energy",
    confidence=0.0,
    evidence=Evidence(0, 0, 0),
    boundness=None,
    reason="no recommendation: only 3 busy samples (need 5)",
)


def test_refusals_that_differ_only_in_numbers_are_counted_together_with_their_range() -> None:
    # Regression: the report printed "only n busy samples (need n)", literal placeholders.
    caps = (
        BASE,
        replace(BASE, gpu=1, reason="no recommendation: only 4 busy samples (need 5)"),
        replace(BASE, gpu=4, reason="no recommendation: only 1 busy samples (need 5)"),
        replace(BASE, gpu=2, reason="no recommendation: GPU failed to report"),
        replace(BASE, gpu=3, recommended_limit_w=500.0, reason="memory-bound work"),
    )
    assert refusal_counts(caps) == {
        "only 1–4 busy samples (need 5)": 3,
        "GPU failed to report": 1,
    }


def test_the_summary_calls_the_fleets_gpu_power_a_total_and_gives_it_per_gpu() -> None:
    # Regression: "Mean GPU power 136.58 kW" read as one GPU's mean, at 136 kW.
    summary = Summary(
        gpu_count=256,
        host_count=32,
        gpu_energy_kwh=68.0,
        node_energy_kwh=90.0,
        fleet_gpu_power_kw=136.58,
        cap_saving_kwh_per_job_hour=0.3,
        cooling_saving_kw=0.7,
        recommended_caps=59,
    )
    table = _summary_table(summary)
    assert "Mean GPU power" not in table
    assert "GPU power, all GPUs together (mean over the window)" in table
    assert "136.58 kW (534 W per GPU)" in table
    assert "59 GPUs: their jobs 300 Wh less per hour of their work" in table
    bigger = _summary_table(replace(summary, cap_saving_kwh_per_job_hour=2.5))
    assert "59 GPUs: their jobs 2.50 kWh less per hour of their work" in bigger
