"""The page's words: refusals counted by reason."""

from __future__ import annotations

from dataclasses import replace

from wattwise.optimizer.recommend.types import CapRecommendation, Evidence
from wattwise.optimizer.report.html import refusal_counts

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


def test_refusals_that_differ_only_in_numbers_are_counted_together() -> None:
    caps = (
        BASE,
        replace(BASE, gpu=1, reason="no recommendation: only 4 busy samples (need 5)"),
        replace(BASE, gpu=2, reason="no recommendation: GPU failed to report"),
        replace(BASE, gpu=3, recommended_limit_w=500.0, reason="memory-bound work"),
    )
    assert refusal_counts(caps) == {
        "only n busy samples (need n)": 2,
        "GPU failed to report": 1,
    }
