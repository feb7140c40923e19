"""JSON that parsers in other languages accept: no NaN or infinity.

wattwise keeps an unknown measure as NaN in its arrays and dataclasses; JSON has no
such value (``json.dumps`` writes ``NaN``, which JavaScript's, Go's and jq's parsers
reject). The API, the command line, webhooks and the evaluation's reports all write
an unknown value as ``null`` through :func:`clean`.
"""

from __future__ import annotations

import math


def clean(value: object) -> object:
    """``value`` with every non-finite float, however deeply nested, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value
