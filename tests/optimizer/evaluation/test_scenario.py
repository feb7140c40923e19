"""Scenario files: the placement job stream and the checks that refuse what cannot run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from wattwise.optimizer.evaluation.scenario import Scenario


def _scenario(**placement: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "two-models",
            "seed": 5,
            "racks": [
                {"name": "h01", "zone": "z1", "nodes": 6},
                {"name": "a01", "zone": "z2", "nodes": 2, "gpu_model": "A100_SXM"},
            ],
            "placement": {"jobs": 64, "gpus_per_job": [1, 2, 4], **placement},
        }
    )


def test_jobs_asking_for_one_of_several_models_draw_it_in_proportion_to_installed_gpus() -> None:
    scenario = _scenario(gpu_model=["H100", "A100"])
    jobs = scenario.placement_jobs()
    drawn = Counter(j.gpu_model for j in jobs)
    assert set(drawn) == {"H100", "A100"}
    assert drawn["H100"] > 2 * drawn["A100"]  # 48 H100s installed against 16 A100s
    assert jobs == scenario.placement_jobs()
    # the sizes are those a single model would get: adding models changes no job's size
    assert [j.gpus for j in jobs] == list(scenario.placement.job_sizes(scenario.seed))


def test_a_single_model_or_none_is_asked_for_by_every_job() -> None:
    assert {j.gpu_model for j in _scenario(gpu_model="A100").placement_jobs()} == {"A100"}
    assert {j.gpu_model for j in _scenario().placement_jobs()} == {None}


def test_a_placement_model_no_rack_holds_is_refused_naming_the_racks_models() -> None:
    with pytest.raises(ValidationError, match="'L40S' matches no rack's GPUs"):
        _scenario(gpu_model=["H100", "L40S"])
    with pytest.raises(ValidationError, match="at least one model"):
        _scenario(gpu_model=[])


def test_idle_background_nodes_need_background_spread_over_gpus() -> None:
    # Whole-node background draws every node busy or idle by itself: the share of idle
    # nodes was silently ignored.
    with pytest.raises(ValidationError, match="background_whole_nodes = false"):
        _scenario(background_idle_nodes=0.3)
    assert _scenario(background_idle_nodes=0.3, background_whole_nodes=False)
