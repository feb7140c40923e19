"""The optimizer's points as line protocol: power-budget plans in ``recommendation``."""

from __future__ import annotations

import math
from dataclasses import replace

from wattwise.collector.schema import MEASUREMENTS
from wattwise.common.lineproto import parse_line
from wattwise.optimizer.recommend.budget_types import BudgetCap, BudgetPlan
from wattwise.optimizer.service import lines

AT_NS = 1_700_000_000_123_456_789


def _cap(host: str, gpu: int, planned_w: float, *, applied: bool) -> BudgetCap:
    return BudgetCap(host, gpu, f"slurm-{gpu}", "normal", 700.0, planned_w, 700.0, 2.5, applied)


PLANNED = BudgetPlan(
    scope="zone:z1",
    limit_w=30_000.0,
    event_id="9f0c4e6a1b2d4c0e8a7b6c5d4e3f2a1b",
    gpus=32,
    predicted_peak_before_w=33_912.5,
    predicted_peak_after_w=29_304.25,
    guaranteed_max_w=29_950.125,
    planned=True,
    feasible=False,
    work_lost_pct=1.4375,
    caps=(
        _cap("sim-r01-n01", 0, 520.0, applied=True),
        _cap("sim-r01-n01", 3, 540.0, applied=False),
        _cap("sim-r01-n02", 1, 610.0, applied=False),
    ),
    pause=("slurm-7",),
    applied_share=1 / 3,
    reason="predicted peak 33.9 kW would reach the 30.0 kW limit: 3 GPUs capped",
)
UNPLANNED = BudgetPlan(
    scope="rack:r02",
    limit_w=1e9,
    event_id=None,
    gpus=16,
    predicted_peak_before_w=8_922.320313346285,
    predicted_peak_after_w=8_922.320313346285,
    guaranteed_max_w=15_214.761434599543,
    planned=False,
    feasible=True,
    work_lost_pct=0.0,
    caps=(),
    pause=(),
    applied_share=1.0,
    reason="default limits hold it",
)


def test_budget_readings_encode_each_plans_numbers_exactly() -> None:
    parsed = [parse_line(line) for line in lines.encode(lines.budget_readings([PLANNED], AT_NS))]
    (point,) = parsed
    assert point.measurement == "recommendation" and point.time_ns == AT_NS
    # low-cardinality: the scope only, never the event id, a host or a GPU
    assert point.tags == {"kind": "power_budget", "scope": "zone:z1"}
    assert point.fields == {
        "limit_w": 30_000.0,
        "predicted_peak_before_w": 33_912.5,
        "predicted_peak_after_w": 29_304.25,
        "guaranteed_max_w": 29_950.125,
        "work_lost_pct": 1.4375,
        "capped_gpus": 3,
        "gpus": 32,
        "applied_share": 1 / 3,
        "planned": 1,
        "feasible": 0,
    }
    # 1 == True in Python: the kinds are what the schema registers (0/1 ints, not booleans)
    spec = MEASUREMENTS["recommendation"]
    assert {k: type(v) for k, v in point.fields.items()} == {
        k: spec.fields[k].kind for k in point.fields
    }
    assert spec.fields["planned"].kind is int and spec.fields["capped_gpus"].kind is int


def test_each_plan_is_its_own_point_and_an_unplanned_scope_says_so() -> None:
    readings = lines.budget_readings([PLANNED, UNPLANNED], AT_NS)
    parsed = [parse_line(line) for line in lines.encode(readings)]
    assert [p.tags["scope"] for p in parsed] == ["zone:z1", "rack:r02"]
    rack = parsed[1].fields
    assert (rack["planned"], rack["feasible"]) == (0, 1) and type(rack["planned"]) is int
    assert rack["capped_gpus"] == 0 and rack["applied_share"] == 1.0
    assert rack["limit_w"] == 1e9 and rack["guaranteed_max_w"] == 15_214.761434599543
    assert lines.budget_readings([], AT_NS) == []


def test_a_number_that_is_not_finite_is_left_out_not_written_as_zero() -> None:
    broken = replace(PLANNED, predicted_peak_before_w=math.nan, work_lost_pct=math.inf)
    (line,) = lines.encode(lines.budget_readings([broken], AT_NS))
    fields = parse_line(line).fields
    assert "predicted_peak_before_w" not in fields and "work_lost_pct" not in fields
    assert fields["predicted_peak_after_w"] == 29_304.25 and fields["capped_gpus"] == 3
