"""PromQL text for the Prometheus store's reads: every column aggregated in the store.

A :class:`~.frames.Column` is read as one range function per bucket, evaluated by
``/api/v1/query_range`` at each bucket's end with ``step`` = the bucket: the
column's ``how`` and the :class:`~.vocabulary.Source`'s form pick the function
from :data:`RANGE_FUNCTIONS`, the store's one mapping per aggregation (a new ``how``
needs one entry here, e.g. ``quantile_over_time(0.99, …)``). Each result is then
averaged ``by`` the measurement's labels, so labels a scrape adds (``instance``) or
duplicate series drop out and every answer has one series per GPU, node or zone.

A bucket is ``[start, start + every)``, as InfluxDB's ``GROUP BY time`` and the
embedded store count it. PromQL windows end at the evaluation time (``(t - r, t]``;
Prometheus before 3.0 also takes a sample at exactly ``t - r``), so windows end 1 ms
before the next bucket with ``offset 1ms``: ``[lo, hi)`` is ``[hi - lo] offset (t - hi
+ 1ms)`` evaluated at ``t``. The capped share needs a bit of ``clock_event_reasons``,
which PromQL has no operator for: ``floor(x / 4) % 2`` is that bit, averaged over a
subquery at the agent's sample interval. ``stddev_over_time`` is the population standard
deviation: scaled by ``sqrt(n / (n - 1))`` (``n`` from ``count_over_time``) it is the
sample one the other stores give, which names the series twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from wattwise.optimizer.store.frames import CAPPED_BIT, Column
from wattwise.optimizer.store.vocabulary import Form, Source

RANGE_FUNCTIONS: dict[tuple[str, Form], str] = {
    ("mean", "gauge"): "avg_over_time({series}[{range}]{offset})",
    ("sum", "gauge"): "sum_over_time({series}[{range}]{offset})",
    ("sum", "counter"): "increase({series}[{range}]{offset})",
    ("max", "gauge"): "max_over_time({series}[{range}]{offset})",
    ("capped_share", "gauge"): (
        "avg_over_time((floor({series} / {bit}) % 2)[{range}:{resolution}]{offset})"
    ),
    # stddev_over_time divides by n (Prometheus and VictoriaMetrics alike): times
    # sqrt(n / (n - 1)) = sqrt(1 + 1 / (n - 1)) it is the sample standard deviation InfluxQL's
    # STDDEV() gives, and a window of one sample (n - 1 > 0 drops it) has none, as in InfluxDB
    ("stddev", "gauge"): (
        "stddev_over_time({series}[{range}]{offset})"
        " * sqrt(1 + 1 / (count_over_time({series}[{range}]{offset}) - 1 > 0))"
    ),
}
"""(``Column.how``, source form) → PromQL over one bucket's window."""


def selectors_in_query(column: Column, sources: Sequence[Source]) -> int:
    """How many series selectors :func:`column_expression` writes (at least 1): a group's
    host matcher is in each (a sum of energy read from a gauge ``or`` a counter has two,
    as has the standard deviation)."""
    templates = [RANGE_FUNCTIONS.get((column.how, source.form), "") for source in sources]
    return max(1, sum(template.count("{series}") for template in templates))


def string(value: str) -> str:
    """A double-quoted PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def literal(value: str) -> str:
    """``value`` matched literally by an RE2 pattern (Prometheus' and VictoriaMetrics'
    regular expressions): only the metacharacters are escaped, since RE2 refuses an
    escaped letter or space where Python's ``re.escape`` would make one."""
    return _RE2_SPECIAL.sub(r"\\\1", value)


def equal_to_one_of(label: str, values: Sequence[str]) -> str:
    """A matcher for ``label`` being exactly one of ``values`` (RE2 alternation, anchored)."""
    if len(values) == 1:
        return f"{label}={string(values[0])}"
    alternation = "|".join(literal(v) for v in sorted(values))
    return f"{label}=~{string(alternation)}"


def selector(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def scope_matchers(filters: Mapping[str, Sequence[str]]) -> list[str]:
    """Label → allowed values, as matchers (labels as the store names them)."""
    return [equal_to_one_of(label, values) for label, values in sorted(filters.items())]


def column_expression(
    column: Column,
    sources: Sequence[Source],
    *,
    group_by: Sequence[str],
    matchers: Sequence[str],
    range_ms: int,
    offset_ms: int,
    resolution_ms: int,
) -> str | None:
    """The column over one window, one series per ``group_by`` set; None if unreadable."""
    parts = []
    for source in sources:
        template = RANGE_FUNCTIONS.get((column.how, source.form))
        if template is None:
            continue
        inner = template.format(
            series=selector(source.metric, [*matchers, *source.matchers]),
            range=f"{range_ms}ms",
            offset=f" offset {offset_ms}ms" if offset_ms else "",
            resolution=f"{resolution_ms}ms",
            bit=CAPPED_BIT,
        )
        expression = f"avg by ({', '.join(group_by)}) ({inner})"
        parts.append(expression if source.scale == 1.0 else f"{expression} * {source.scale!r}")
    return " or ".join(parts) or None


def latest_expressions(source: Source, matchers: Sequence[str]) -> tuple[str, str]:
    """(the newest value, its timestamp) of each series, within the store's lookback."""
    series = selector(source.metric, [*matchers, *source.matchers])
    return series, f"timestamp({series})"
