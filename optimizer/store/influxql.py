"""InfluxQL text for the store's reads: aggregation happens in the database.

Every series read is one ``SELECT … GROUP BY time(…), <tags> fill(none)``, so
InfluxDB returns one row per series and bucket, never the raw samples. The
share of power-capped samples needs a bitwise ``&`` on ``clock_event_reasons``
before the mean, which InfluxQL only allows in a subquery::

    SELECT mean("power_w") AS "power_w", …, mean("capped") / 4 AS "capped_share",
           sum("energy_j") AS "energy_j"
    FROM (SELECT "power_w", …, "clock_event_reasons" & 4 AS "capped"
          FROM "db"."rp"."gpu" WHERE <time> AND <scope>)
    WHERE <time> GROUP BY time(60s), "host", "gpu", … fill(none)

``stddev("power_w") AS "power_sd_w"`` is InfluxQL's sample standard deviation
(n − 1), null in a bucket of one sample.

The 1-minute downsampled retention policy that ``init-db`` creates holds
``mean_<field>``, ``sum_energy_j``, ``max_power_instant_w``, ``stddev_power_w`` and
``capped_share`` (see :mod:`wattwise.optimizer.store.initdb`); :func:`series_query`
reads either.
"""

from __future__ import annotations

from collections.abc import Mapping

from wattwise.optimizer.store.frames import CAPPED_BIT, Column, SeriesSpec


def ident(name: str) -> str:
    """A double-quoted InfluxQL identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def source(database: str, retention_policy: str | None, measurement: str) -> str:
    """``"db"."rp"."m"``, or ``"db".."m"`` for the database's default policy."""
    rp = ident(retention_policy) if retention_policy else ""
    return f"{ident(database)}.{rp}.{ident(measurement)}"


def tag_conditions(filters: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One parenthesised OR of equalities per tag (no regex: values stay literal)."""
    return [
        "(" + " OR ".join(f"{ident(tag)} = {literal(v)}" for v in values) + ")"
        for tag, values in sorted(filters.items())
    ]


def where(start_ns: int, end_ns: int, filters: Mapping[str, tuple[str, ...]]) -> str:
    """Time range (bare integers are nanoseconds) and the tag filters."""
    parts = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}", *tag_conditions(filters)]
    return " AND ".join(parts)


def _raw_expression(column: Column) -> str:
    if column.how == "capped_share":
        return f"mean({ident('capped')}) / {CAPPED_BIT} AS {ident(column.name)}"
    return f"{column.how}({ident(column.field)}) AS {ident(column.name)}"


def _downsampled_expression(column: Column) -> str:
    if column.how == "capped_share":
        return f"mean({ident('capped_share')}) AS {ident(column.name)}"
    if column.how == "stddev":
        # the minutes' spreads of 1 s samples about each minute's own mean, averaged: equal
        # to the raw read for 1-minute buckets; for longer ones it leaves out how the minute
        # means move (a stddev of the minute spreads would be no spread of the samples)
        return f"mean({ident('stddev_' + column.field)}) AS {ident(column.name)}"
    # mean of minute means weighs each minute alike; exact when minutes are full
    stored = f"{column.how}_{column.field}"
    return f"{column.how}({ident(stored)}) AS {ident(column.name)}"


def _group_by(spec: SeriesSpec, every_s: int) -> str:
    tags = ", ".join(ident(tag) for tag in spec.tags)
    return f"GROUP BY time({int(every_s)}s), {tags} fill(none)"


def series_query(
    spec: SeriesSpec,
    *,
    database: str,
    retention_policy: str | None,
    start_ns: int,
    end_ns: int,
    every_s: int,
    filters: Mapping[str, tuple[str, ...]],
    downsampled: bool = False,
) -> str:
    """One aggregating SELECT for ``spec`` over ``[start_ns, end_ns)``."""
    origin = source(database, retention_policy, spec.measurement)
    window = where(start_ns, end_ns, filters)
    if downsampled:
        select = ", ".join(_downsampled_expression(c) for c in spec.columns)
        return f"SELECT {select} FROM {origin} WHERE {window} {_group_by(spec, every_s)}"
    select = ", ".join(_raw_expression(c) for c in spec.columns)
    if not any(c.how == "capped_share" for c in spec.columns):
        return f"SELECT {select} FROM {origin} WHERE {window} {_group_by(spec, every_s)}"
    inner_fields = dict.fromkeys(  # a field two columns aggregate is selected once
        f"{ident(c.field)} & {CAPPED_BIT} AS {ident('capped')}"
        if c.how == "capped_share"
        else ident(c.field)
        for c in spec.columns
    )
    inner = f"SELECT {', '.join(inner_fields)} FROM {origin} WHERE {window}"
    outer_window = where(start_ns, end_ns, {})
    return f"SELECT {select} FROM ({inner}) WHERE {outer_window} {_group_by(spec, every_s)}"


def latest_query(
    measurement: str,
    tags: tuple[str, ...],
    *,
    database: str,
    retention_policy: str | None,
    filters: Mapping[str, tuple[str, ...]],
) -> str:
    """The newest raw row of each series: one row per GPU, node or zone."""
    origin = source(database, retention_policy, measurement)
    conditions = tag_conditions(filters)
    where_clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    group = ", ".join(ident(tag) for tag in tags)
    return f"SELECT * FROM {origin}{where_clause} GROUP BY {group} ORDER BY time DESC LIMIT 1"
