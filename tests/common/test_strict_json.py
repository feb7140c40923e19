"""Unknown measures leave as null, however deep, and everything else as it was."""

from __future__ import annotations

import json
import math

from wattwise.common.strict_json import clean


def test_non_finite_floats_become_null_at_any_depth() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (math.nan, 2)}
    assert clean(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [None, 2]}
    json.dumps(clean(value), allow_nan=False)  # would raise on a NaN left behind


def test_finite_values_and_other_types_pass_unchanged() -> None:
    value = {"w": 700.0, "n": 3, "s": "rack:r1", "flag": True, "none": None, "zero": -0.0}
    assert clean(value) == value
