"""``wattwise dashboards lint``: what Grafana would accept silently but show wrong.

Every problem is one line ``<file>: <where>: <what>``; an empty list means the
dashboards and provisioning files are fine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wattwise.collector.schema import MEASUREMENTS
from wattwise.dashboards.influxql import QueryError, check_names, parse, substitute

Json = dict[str, Any]

TOP_LEVEL_KEYS = frozenset(
    [
        "id",
        "uid",
        "title",
        "description",
        "tags",
        "timezone",
        "editable",
        "graphTooltip",
        "time",
        "timepicker",
        "fiscalYearStartMonth",
        "liveNow",
        "weekStart",
        "refresh",
        "schemaVersion",
        "version",
        "panels",
        "templating",
        "annotations",
        "links",
        "gnetId",
        "revision",
    ]
)
REQUIRED_KEYS = ("schemaVersion", "templating", "annotations", "title", "panels")
MIN_SCHEMA_VERSION = 36
"""Grafana 9.0: datasources referenced as {type, uid} objects."""
BUILTIN_DATASOURCES = frozenset(("-- Grafana --", "grafana", "-- Dashboard --", "-- Mixed --"))
LINT_TIME_FILTER = "time >= now() - 6h"
LINT_RANGE_MS = (1_700_000_000_000 - 6 * 3_600_000, 1_700_000_000_000)
"""``${__from}`` and ``${__to}`` for the lint: six hours, as ``LINT_TIME_FILTER``; a fixed
range, as only the query's form is checked."""
LINT_INTERVAL = "10s"
_RANGE_BOUNDS = tuple(
    re.compile(rf"\btime\s*{op}=?\s*\$\{{{end}\}}ms", re.IGNORECASE)
    for op, end in ((">", "__from"), ("<", "__to"))
)
"""``time >= ${__from}ms …`` and ``time <= ${__to}ms``: a query that must see points from
before the range (events stamped at their start) bounds ``time`` by the range's ends."""


def iter_panels(panels: list[Json]) -> Iterator[Json]:
    """Every panel, with the panels nested in rows after their row."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def lint_dashboard(path: Path, datasources: frozenset[str]) -> list[str]:
    try:
        board = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"{path}: not valid JSON: {e}"]
    if not isinstance(board, dict):
        return [f"{path}: a dashboard must be a JSON object"]
    problems = _top_level(board)
    if not any("required" in p or "must be" in p for p in problems):
        variables = _variables(board)
        problems += _panels(board["panels"])
        problems += _datasources(board, variables, datasources)
        problems += _queries(board, variables)
    return [f"{path}: {p}" for p in problems]


def _top_level(board: Json) -> list[str]:
    problems = [f"missing required key {k!r}" for k in REQUIRED_KEYS if k not in board]
    problems += [f"unknown top-level key {k!r}" for k in sorted(set(board) - TOP_LEVEL_KEYS)]
    version = board.get("schemaVersion")
    if "schemaVersion" in board and (not isinstance(version, int) or version < MIN_SCHEMA_VERSION):
        problems.append(f"schemaVersion {version!r} is older than {MIN_SCHEMA_VERSION}")
    for key, inner in (("templating", "list"), ("annotations", "list")):
        if key in board and not isinstance(board[key].get(inner), list):
            problems.append(f"{key}.{inner} must be a list")
    return problems


def _variables(board: Json) -> dict[str, Json]:
    return {v["name"]: v for v in board["templating"]["list"] if "name" in v}


def _panels(panels: list[Json]) -> list[str]:
    problems: list[str] = []
    seen: set[object] = set()
    for panel in iter_panels(panels):
        where = f"panel {panel.get('id')!r} ({panel.get('title', '')!r})"
        if panel.get("id") in seen:
            problems.append(f"{where}: duplicate panel id")
        seen.add(panel.get("id"))
        if "type" not in panel:
            problems.append(f"{where}: no type")
        if panel.get("type") != "row" and "defaults" not in panel.get("fieldConfig", {}):
            problems.append(f"{where}: no fieldConfig.defaults")
        problems += [f"{where}: {p}" for p in _grid_pos(panel.get("gridPos"))]
    problems += _overlaps(panels)
    for row in panels:
        problems += _overlaps(row.get("panels", []))
    return problems


def _grid_pos(pos: object) -> list[str]:
    if not isinstance(pos, dict):
        return ["no gridPos"]
    values = {k: pos.get(k) for k in ("h", "w", "x", "y")}
    bad = [k for k, v in values.items() if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        return [f"gridPos {', '.join(bad)} must be integers"]
    h, w, x, y = (int(v) for v in values.values())  # type: ignore[arg-type]
    checks = [
        (h > 0, "h must be > 0"),
        (0 < w <= 24, "w must be 1..24"),
        (0 <= x < 24, "x must be 0..23"),
    ]
    checks += [(x + w <= 24, "x + w must be <= 24"), (y >= 0, "y must be >= 0")]
    return [f"gridPos {message}" for ok, message in checks if not ok]


def _overlaps(panels: list[Json]) -> list[str]:
    boxes = []
    for p in panels:
        pos = p.get("gridPos")
        if isinstance(pos, dict) and not _grid_pos(pos):
            boxes.append(
                (p.get("id"), pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"])
            )
    problems = []
    for i, (a, ax0, ay0, ax1, ay1) in enumerate(boxes):
        for b, bx0, by0, bx1, by1 in boxes[i + 1 :]:
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                problems.append(f"panels {a!r} and {b!r} overlap")
    return problems


def _datasources(board: Json, variables: dict[str, Json], provisioned: frozenset[str]) -> list[str]:
    known = provisioned | BUILTIN_DATASOURCES
    ds_variables = {f"${n}" for n, v in variables.items() if v.get("type") == "datasource"}
    ds_variables |= {f"${{{n}}}" for n, v in variables.items() if v.get("type") == "datasource"}
    problems = []
    places = [(f"panel {p.get('id')!r}", p) for p in iter_panels(board["panels"])]
    places += [
        (f"panel {p.get('id')!r} target {t.get('refId')!r}", t)
        for _, p in places
        for t in p.get("targets", [])
    ]
    places += [(f"variable {n!r}", v) for n, v in variables.items()]
    places += [(f"annotation {a.get('name')!r}", a) for a in board["annotations"]["list"]]
    for where, item in places:
        ref = item.get("datasource")
        uid = ref.get("uid") if isinstance(ref, dict) else ref
        if ref is not None and uid not in known and uid not in ds_variables:
            problems.append(
                f"{where}: datasource {uid!r} is neither a datasource variable nor provisioned"
            )
    return problems


def _queries(board: Json, variables: dict[str, Json]) -> list[str]:
    values = {name: _lint_value(v) for name, v in variables.items()}
    problems = []
    for panel in iter_panels(board["panels"]):
        for t in panel.get("targets", []):
            where = f"panel {panel.get('id')!r} target {t.get('refId')!r}"
            problems += [
                f"{where}: {p}"
                for p in check_query(t.get("query", ""), values, t.get("resultFormat") == "table")
            ]
    for annotation in board["annotations"]["list"]:
        if annotation.get("query"):
            where = f"annotation {annotation.get('name')!r}"
            problems += [f"{where}: {p}" for p in check_query(annotation["query"], values, True)]
    for name, v in variables.items():
        if v.get("type") == "query":
            problems += [
                f"variable {name!r}: {p}"
                for p in check_query(v.get("query", ""), values, True, False)
            ]
    return problems


def _lint_value(variable: Json) -> str:
    """The value a variable is linted with: its first option, else a match-all regex body."""
    if variable.get("type") == "custom":
        return str(variable["query"]).split(",")[0]
    return ".*"


def check_query(
    query: str, values: dict[str, str], table: bool, needs_time: bool = True
) -> list[str]:
    """Problems of one query: it parses, names exist, and it keeps a long range fast."""
    if not query.strip():
        return ["empty query"]
    problems = []
    if needs_time and not _keeps_to_the_range(query):
        problems.append("query does not use $timeFilter (nor bound time by ${__from}, ${__to})")
    if needs_time and not table and "time($__interval)" not in query.replace(" ", ""):
        problems.append("time series query does not GROUP BY time($__interval)")
    try:
        text = substitute(
            query,
            values,
            time_filter=LINT_TIME_FILTER,
            interval=LINT_INTERVAL,
            range_ms=LINT_RANGE_MS,
        )
        statement = parse(text)
    except QueryError as e:
        return [*problems, f"unparseable query: {e}"]
    return problems + check_names(statement, MEASUREMENTS)


def _keeps_to_the_range(query: str) -> bool:
    """Whether ``time`` is bounded on both sides by the dashboard's range, so a long range
    scans no more than it shows: by ``$timeFilter``, or by ``${__from}`` and ``${__to}``."""
    return "$timeFilter" in query or all(bound.search(query) for bound in _RANGE_BOUNDS)
