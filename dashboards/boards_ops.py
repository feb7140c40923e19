"""The recommendations, models and agent-health dashboards."""

from __future__ import annotations

from wattwise.dashboards.boards_infra import EVERY, TS, T, fleet_sum, stat
from wattwise.dashboards.build import (
    GPU_FILTER,
    HOST_FILTER,
    HOST_WHERE,
    SCOPE_FILTER,
    ZONE_FILTER,
    ZONE_WHERE,
    Board,
    Json,
    field_override,
    power_event_annotation,
    targets,
    unit_property,
)

HOURS_PER_MONTH = 730
SILENT_PANEL = {"timeFrom": "10m", "interval": "30s", "maxDataPoints": 20}
"""Over the last 10 minutes in 20 points, $__interval is 30 s: four empty buckets = 2 minutes."""


def _latest(kind: str, fields: list[str], filt: str, by: str) -> str:
    columns = ", ".join(f'last("{f}") AS "{f}"' for f in fields)
    where = f"WHERE {T} AND \"kind\" = '{kind}' AND {filt}"
    return f'SELECT {columns} FROM "recommendation" {where} GROUP BY {by}'


def _savings(scale: str) -> str:
    return (
        f'SELECT sum("s") {scale} FROM (SELECT last("saving_w") AS "s" FROM "recommendation" '
        f'WHERE {T} AND "kind" =~ /^(power_cap|cooling)$/ AND {ZONE_FILTER} '
        'GROUP BY "kind", "zone", "host", "gpu")'
    )


def recommendations() -> Board:
    b = Board(
        "wattwise-recommendations",
        "Recommendations",
        "What wattwise recommends and what it would save.",
        ["optimizer"],
    )
    b.annotations.append(power_event_annotation())
    b.add(
        "stat",
        "Potential savings now",
        6,
        5,
        targets((_savings("/ 1000"), ""), table=True),
        unit="kwatt",
        **stat(),
        description="Sum of the latest predicted saving of all power-cap and cooling advice.",
    )
    b.add(
        "stat",
        "Potential savings per month",
        6,
        5,
        targets((_savings(f"* {HOURS_PER_MONTH} / 1000"), ""), table=True),
        unit="kwatth",
        **stat(),
        description=f"Potential savings now, held for a month ({HOURS_PER_MONTH} h).",
    )
    over_time = fleet_sum(
        "recommendation",
        "saving_w",
        f'{ZONE_FILTER} AND "kind" =~ /^(power_cap|cooling)$/',
        '"kind", "zone", "host", "gpu"',
        "kind",
    )
    b.add(TS, "Predicted saving by kind", 12, 5, targets((over_time, "$tag_kind")), unit="watt")
    caps = _latest(
        "power_cap",
        [
            "current_limit_w",
            "recommended_limit_w",
            "saving_w",
            "saving_pct",
            "slowdown_pct",
            "confidence",
        ],
        GPU_FILTER,
        '"host", "gpu", "objective"',
    )
    b.add(
        "table",
        "Power caps: current → recommended",
        24,
        9,
        targets((caps, ""), table=True),
        unit="watt",
        options={"sortBy": [{"displayName": "saving_w", "desc": True}], "showHeader": True},
        overrides=[
            field_override("saving_pct|slowdown_pct", unit_property("percent"), regex=True),
            field_override("confidence", unit_property("percentunit")),
        ],
    )
    cooling = _latest(
        "cooling",
        [
            "current_setpoint_c",
            "recommended_setpoint_c",
            "predicted_max_inlet_c",
            "saving_w",
            "saving_pct",
        ],
        ZONE_FILTER,
        '"cluster", "zone"',
    )
    b.add(
        "table",
        "Cooling setpoints: current → recommended",
        12,
        8,
        targets((cooling, ""), table=True),
        unit="celsius",
        overrides=[
            field_override("saving_w", unit_property("watt")),
            field_override("saving_pct", unit_property("percent")),
        ],
    )
    placement = (
        'SELECT "rank", "gpus", "marginal_it_power_w", "marginal_cooling_power_w", "confidence" '
        f'FROM "recommendation" WHERE {T} AND "kind" = \'placement\' AND {HOST_FILTER} '
        'GROUP BY "job", "host" ORDER BY time DESC LIMIT 20'
    )
    b.add(
        "table",
        "Recent placement decisions",
        12,
        8,
        targets((placement, ""), table=True),
        unit="watt",
    )
    _power_budgets(b)
    return b


BUDGET_TABLE_FIELDS = [
    "limit_w",
    "predicted_peak_after_w",
    "work_lost_pct",
    "capped_gpus",
    "applied_share",
    "planned",
    "feasible",
]
"""Columns of the newest plan per scope, after the scope."""


def budget_series_query(field: str) -> str:
    """One field of every power-budget plan per scope, held between refreshes."""
    return (
        f'SELECT last("{field}") FROM "recommendation" WHERE {T} '
        f"AND \"kind\" = 'power_budget' AND {SCOPE_FILTER} "
        f'GROUP BY {EVERY}, "scope" fill(previous)'
    )


def _yes_no(no_color: str, yes_color: str) -> list[Json]:
    """0/1 fields in words."""
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": "no", "color": no_color, "index": 0},
                "1": {"text": "yes", "color": yes_color, "index": 1},
            },
        }
    ]


def _power_budgets(b: Board) -> None:
    """Each scope's limit against its predicted peak, and the newest plan of each scope."""
    b.row("Power budgets")
    b.add(
        TS,
        "Limit and predicted peak per scope",
        12,
        8,
        targets(
            (budget_series_query("limit_w"), "$tag_scope limit"),
            (budget_series_query("predicted_peak_before_w"), "$tag_scope peak at current limits"),
            (budget_series_query("predicted_peak_after_w"), "$tag_scope peak under the plan"),
        ),
        unit="watt",
        custom={"lineInterpolation": "stepAfter"},
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".* limit$"},
                "properties": [
                    {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
                ],
            }
        ],
        description="Each scope's limit in force (dashed), and the next interval's predicted "
        "peak at the limits in force now and under the planned caps.",
    )
    newest = _latest("power_budget", BUDGET_TABLE_FIELDS, SCOPE_FILTER, '"scope"')
    b.add(
        "table",
        "Newest plan per scope",
        12,
        8,
        targets((newest, ""), table=True),
        unit="watt",
        options={"sortBy": [{"displayName": "work_lost_pct", "desc": True}], "showHeader": True},
        overrides=[
            field_override("work_lost_pct", unit_property("percent")),
            field_override("capped_gpus", unit_property("none")),
            field_override("applied_share", unit_property("percentunit")),
            field_override(
                "planned",
                unit_property("none"),
                {"id": "mappings", "value": _yes_no("green", "orange")},
            ),
            field_override(
                "feasible",
                unit_property("none"),
                {"id": "mappings", "value": _yes_no("red", "green")},
            ),
        ],
        description="planned: the scope needs caps to stay under its limit; feasible: no = "
        "even every GPU at its minimum limit cannot hold it (pause or move work). The GPUs' "
        "planned limits: GET /v1/recommendations/power-budget.",
    )


def models() -> Board:
    b = Board(
        "wattwise-models",
        "Models",
        "Accuracy and training windows of the optimizer's models.",
        ["optimizer"],
    )
    per_model = f'FROM "model" {ZONE_WHERE} GROUP BY {EVERY}, "name", "gpu_model" fill(none)'
    b.add(
        TS,
        "Error over time",
        12,
        8,
        targets((f'SELECT last("error_pct") {per_model}', "$tag_name $tag_gpu_model")),
        unit="percent",
    )
    b.add(
        TS,
        "Mean absolute error over time",
        12,
        8,
        targets((f'SELECT last("mae") {per_model}', "$tag_name $tag_gpu_model")),
        unit="none",
    )
    window = (
        'SELECT last("version") AS "version", last("error_pct") AS "error_pct", '
        'last("samples") AS "samples", last("train_start_ns") / 1000000 AS "train_start", '
        'last("train_end_ns") / 1000000 AS "train_end" '
        f'FROM "model" {ZONE_WHERE} GROUP BY "name", "gpu_model"'
    )
    b.add(
        "table",
        "Current models and their training windows",
        24,
        8,
        targets((window, ""), table=True),
        unit="none",
        overrides=[field_override("train_.*", unit_property("dateTimeAsIso"), regex=True)],
    )
    return b


def silent_agents_query() -> str:
    """Per host, agent reports in the last two minutes (0 = the agent stopped reporting)."""
    return (
        f'SELECT moving_average(count("tick_duration_s"), 4) FROM "agent" {HOST_WHERE} '
        f'GROUP BY {EVERY}, "host" fill(0)'
    )


def agent_health() -> Board:
    b = Board(
        "wattwise-agent", "Agent health", "Delivery and timing of every wattwise agent.", ["agent"]
    )
    per_host = f'FROM "agent" {HOST_WHERE} GROUP BY {EVERY}, "host"'
    b.add(
        "bargauge",
        "Reports in the last 2 minutes (0 = stopped reporting)",
        24,
        6,
        targets((silent_agents_query(), "$tag_host")),
        unit="none",
        thresholds={
            "mode": "absolute",
            "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
        },
        options={
            "orientation": "vertical",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        description="Reports per 30 s, averaged over the last four windows; red = silent.",
        **SILENT_PANEL,
    )
    b.add(
        TS,
        "Queue depth",
        12,
        8,
        targets((f'SELECT last("queue_lines") {per_host}', "$tag_host lines")),
        unit="none",
    )
    b.add(
        TS,
        "Tick duration",
        12,
        8,
        targets((f'SELECT max("tick_duration_s") {per_host}', "$tag_host")),
        unit="s",
    )
    increase = 'SELECT non_negative_difference(last("{}")) ' + per_host
    b.add(
        TS,
        "Retried batches",
        8,
        8,
        targets((increase.format("retried_batches_total"), "$tag_host")),
        unit="none",
        custom={"drawStyle": "bars"},
    )
    b.add(
        TS,
        "Dropped and dead-lettered lines",
        8,
        8,
        targets(
            (increase.format("dropped_lines_total"), "$tag_host dropped"),
            (increase.format("dead_lettered_lines_total"), "$tag_host dead-lettered"),
        ),
        unit="none",
        custom={"drawStyle": "bars"},
    )
    b.add(
        TS,
        "Lines sent",
        8,
        8,
        targets((increase.format("sent_lines_total"), "$tag_host")),
        unit="none",
    )
    return b
