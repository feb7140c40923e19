"""Memory-boundness from the kernels' memory and SM activity (the soft roofline)."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.optimizer.models.boundness import (
    MAX_BOUNDNESS,
    estimate_boundness,
    kernel_activities,
)


def test_boundness_is_capped_where_a_misjudgement_would_cost_most() -> None:
    mu = estimate_boundness(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    assert mu.tolist() == [MAX_BOUNDNESS, 0.0, 0.0]


def test_boundness_follows_the_cubic_roofline_between_memory_and_sm_time() -> None:
    mu = estimate_boundness(np.array([0.5, 0.5]), np.array([0.5, 1.0]))
    assert mu.tolist() == pytest.approx([0.5, 0.125 / 1.125])


def test_activities_are_per_unit_of_busy_time() -> None:
    memory, compute = kernel_activities(
        np.array([0.5]), np.array([0.25]), np.array([182.0]), np.array([728.0])
    )
    assert memory.tolist() == [0.5]
    assert compute.tolist() == [0.5]
