"""Pre-encoded recommendations: selecting by index returns exactly what filtering would."""

from __future__ import annotations

import json
import math

from wattwise.common.strict_json import clean
from wattwise.optimizer.recommend.budget_types import BudgetCap, BudgetPlan
from wattwise.optimizer.service.engine import Snapshot
from wattwise.optimizer.service.views import BudgetItems, IndexedItems, SnapshotView

ROWS: list[dict[str, object]] = [
    {"cluster": "c", "zone": z, "host": f"h{i}", "gpu": g, "saving_w": float(i)}
    for i, z in enumerate(("z1", "z1", "z2", "z2", "z1"))
    for g in range(2)
]


def _hosts(chosen: list[bytes]) -> list[tuple[str, int]]:
    return [(d["host"], d["gpu"]) for d in map(json.loads, chosen)]


def test_filters_combine_and_keep_the_original_order() -> None:
    items = IndexedItems.build(ROWS)
    chosen = items.select({"zone": ["z1"], "host": ["h4", "h0", "h2"]})
    assert _hosts(chosen) == [("h0", 0), ("h0", 1), ("h4", 0), ("h4", 1)]


def test_narrowest_filter_first_gives_the_same_answer_as_widest_first() -> None:
    items = IndexedItems.build(ROWS)
    expected = [
        (r["host"], r["gpu"]) for r in ROWS if r["zone"] in ("z1", "z2") and r["host"] == "h3"
    ]
    assert _hosts(items.select({"zone": ["z1", "z2"], "host": ["h3"]})) == expected
    assert _hosts(items.select({"host": ["h3"], "zone": ["z1", "z2"]})) == expected


def test_no_filter_is_everything_and_an_unknown_value_is_nothing() -> None:
    items = IndexedItems.build(ROWS)
    assert len(items.select({"zone": [], "host": []})) == len(ROWS)
    assert items.select({"zone": ["z9"]}) == []
    assert items.select({"zone": ["z1"], "host": ["h2"]}) == []


def test_non_finite_values_are_encoded_as_null() -> None:
    items = IndexedItems.build([{"host": "h", "saving_w": math.nan, "limit": math.inf}])
    assert json.loads(items.items[0]) == {"host": "h", "saving_w": None, "limit": None}


def _cap(host: str, gpu: int, planned_w: float) -> BudgetCap:
    return BudgetCap(host, gpu, None, "normal", 700.0, planned_w, 700.0, 1.5, False)


def _plan(scope: str, caps: tuple[BudgetCap, ...], **extra: object) -> BudgetPlan:
    fields: dict[str, object] = {
        "scope": scope, "limit_w": 30_000.0, "event_id": None, "gpus": 16,
        "predicted_peak_before_w": 33_000.0, "predicted_peak_after_w": 29_000.0,
        "guaranteed_max_w": 31_000.0, "planned": bool(caps), "feasible": True,
        "work_lost_pct": 0.8, "caps": caps, "pause": (), "applied_share": 0.5,
        "reason": "over its limit at default limits",
    }  # fmt: skip
    return BudgetPlan(**{**fields, **extra})  # type: ignore[arg-type]


PLANS = (
    _plan("rack:r01", (_cap("a", 0, 500.0), _cap("b", 1, 450.0), _cap("a", 3, 480.0))),
    _plan("rack:r02", ()),
    _plan("site", (_cap("b", 1, 400.0), _cap("c", 0, 600.0)), limit_w=math.nan),
)


def _scopes_and_caps(chosen: list[bytes]) -> list[tuple[str, list[tuple[str, int]]]]:
    plans = [json.loads(b) for b in chosen]
    return [(p["scope"], [(c["host"], c["gpu"]) for c in p["caps"]]) for p in plans]


def test_budget_plans_encode_as_their_dicts_with_non_finite_values_as_null() -> None:
    items = BudgetItems.build(PLANS)
    decoded = [json.loads(b) for b in items.select({})]
    expected = [clean(p.as_dict()) for p in PLANS]
    assert decoded == expected and decoded[2]["limit_w"] is None


def test_budget_plans_filter_by_scope_and_by_host_keeping_that_hosts_caps_only() -> None:
    items = BudgetItems.build(PLANS)
    assert _scopes_and_caps(items.select({"scope": ["site", "rack:r02"], "host": []})) == [
        ("rack:r02", []),
        ("site", [("b", 1), ("c", 0)]),
    ]
    assert _scopes_and_caps(items.select({"host": ["a"]})) == [("rack:r01", [("a", 0), ("a", 3)])]
    assert _scopes_and_caps(items.select({"host": ["b"], "scope": ["site"]})) == [
        ("site", [("b", 1)])
    ]
    assert _scopes_and_caps(items.select({"host": ["c", "a"]})) == [
        ("rack:r01", [("a", 0), ("a", 3)]),
        ("site", [("c", 0)]),
    ]
    assert items.select({"host": ["nope"]}) == [] and items.select({"scope": ["rack:r9"]}) == []
    # Everything of a plan but its caps is the whole plan's, whatever the host filter.
    (only_a,) = items.select({"host": ["a"]})
    whole = json.loads(items.select({"scope": ["rack:r01"]})[0])
    assert {k: v for k, v in json.loads(only_a).items() if k != "caps"} == {
        k: v for k, v in whole.items() if k != "caps"
    }


def test_a_snapshot_view_answers_its_budget_plans_as_a_read_does() -> None:
    # Only what a view is built from: no fleet arrays are needed for it.
    snapshot = Snapshot(1_714_644_000 * 10**9, (), (), (), (), (), None, budget=PLANS)  # type: ignore[arg-type]
    view = SnapshotView.build(snapshot)
    body = json.loads(view.body(view.budget.select({"host": ["c"]})))
    assert body["computed_at"] == "2024-05-02T10:00:00Z" and body["count"] == 1
    assert [item["scope"] for item in body["items"]] == ["site"]
    assert json.loads(view.body(view.budget.select({})))["count"] == 3
