"""Pre-encoded recommendations: selecting by index returns exactly what filtering would."""

from __future__ import annotations

import json
import math

from wattwise.optimizer.service.views import IndexedItems

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
