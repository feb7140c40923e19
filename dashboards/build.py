"""Builders for wattwise's Grafana dashboards: panels laid out on the 24-column grid.

The dashboards in ``dashboards/*.json`` are generated from :mod:`.catalog` with
``python -m wattwise.dashboards.build`` so that every panel shares one datasource
reference, one set of template variables and one layout rule; the JSON files
are what Grafana provisions and what ``wattwise dashboards lint`` checks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Json = dict[str, Any]

SCHEMA_VERSION = 39
"""Grafana 10.4/11's dashboard schema version."""
DATASOURCE: Json = {"type": "influxdb", "uid": "${datasource}"}
GRID_COLUMNS = 24

_LABEL_VARIABLES = ("cluster", "zone", "rack", "host", "gpu")
GPU_FILTER = " AND ".join(f'"{v}" =~ /^${v}$/' for v in _LABEL_VARIABLES)
HOST_FILTER = " AND ".join(f'"{v}" =~ /^${v}$/' for v in _LABEL_VARIABLES[:4])
ZONE_FILTER = " AND ".join(f'"{v}" =~ /^${v}$/' for v in _LABEL_VARIABLES[:2])
GPU_WHERE = f"WHERE $timeFilter AND {GPU_FILTER}"
HOST_WHERE = f"WHERE $timeFilter AND {HOST_FILTER}"
ZONE_WHERE = f"WHERE $timeFilter AND {ZONE_FILTER}"


def target(query: str, ref: str = "A", *, table: bool = False, alias: str = "") -> Json:
    """A raw InfluxQL target; ``table`` for tables of current values."""
    result: Json = {
        "refId": ref,
        "datasource": DATASOURCE,
        "query": query,
        "rawQuery": True,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        result["alias"] = alias
    return result


def field_override(names: str, *properties: Json, regex: bool = False) -> Json:
    """A table's or graph's override for the fields ``names`` (a regular expression with
    ``regex``) setting ``properties``, e.g. :func:`unit_property`."""
    matcher = {"id": "byRegexp" if regex else "byName", "options": names}
    return {"matcher": matcher, "properties": list(properties)}


def unit_property(unit: str) -> Json:
    return {"id": "unit", "value": unit}


def targets(*queries: tuple[str, str], table: bool = False) -> list[Json]:
    """Several targets from (query, alias) pairs, refIds A, B, …"""
    return [
        target(q, chr(ord("A") + i), table=table, alias=alias)
        for i, (q, alias) in enumerate(queries)
    ]


def label_variables() -> list[Json]:
    """cluster → zone → rack → host → gpu, each narrowed by the ones before it."""
    result = [_datasource_variable()]
    for i, name in enumerate(_LABEL_VARIABLES):
        where = " AND ".join(f'"{v}" =~ /^${v}$/' for v in _LABEL_VARIABLES[:i])
        query = f'SHOW TAG VALUES FROM "gpu" WITH KEY = "{name}"' + (
            f" WHERE {where}" if where else ""
        )
        result.append(
            {
                "type": "query",
                "name": name,
                "label": name.capitalize(),
                "datasource": DATASOURCE,
                "query": query,
                "definition": query,
                "refresh": 1,
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
                "regex": "",
                "sort": 3 if name == "gpu" else 1,
                "hide": 0,
            }
        )
    return result


def custom_variable(name: str, label: str, values: list[str]) -> Json:
    """A single-choice list, e.g. which tag to group power by."""
    options = [{"selected": i == 0, "text": v, "value": v} for i, v in enumerate(values)]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"selected": True, "text": values[0], "value": values[0]},
        "options": options,
        "multi": False,
        "includeAll": False,
        "hide": 0,
    }


def _datasource_variable() -> Json:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "InfluxDB",
        "query": "influxdb",
        "current": {"selected": True, "text": "wattwise InfluxDB", "value": "wattwise-influxdb"},
        "options": [],
        "refresh": 1,
        "regex": "",
        "hide": 0,
    }


class Board:
    """One dashboard being built; panels flow left to right, then onto a new line."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[Json] = []
        self.variables = label_variables()
        self.annotations: list[Json] = [_builtin_annotation()]
        self._x = self._y = self._line_h = 0

    def row(self, title: str) -> None:
        """A full-width row header, starting a new line."""
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "id": len(self.panels) + 1,
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": self._y},
            }
        )
        self._y += 1

    def add(
        self, kind: str, title: str, w: int, h: int, query_targets: list[Json], **extra: Any
    ) -> Json:
        """Add a panel of Grafana type ``kind``; ``extra`` sets options, fieldConfig, etc."""
        if self._x + w > GRID_COLUMNS:
            self._newline()
        defaults: Json = {"unit": extra.pop("unit", "none")}
        for key in ("mappings", "thresholds", "custom", "noValue", "min", "max", "decimals"):
            if key in extra:
                defaults[key] = extra.pop(key)
        panel: Json = {
            "type": kind,
            "id": len(self.panels) + 1,
            "title": title,
            "description": extra.pop("description", ""),
            "datasource": DATASOURCE,
            "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y},
            "fieldConfig": {"defaults": defaults, "overrides": extra.pop("overrides", [])},
            "options": extra.pop("options", {}),
            "targets": query_targets,
            **extra,
        }
        self.panels.append(panel)
        self._x += w
        self._line_h = max(self._line_h, h)
        return panel

    def _newline(self) -> None:
        self._y += self._line_h
        self._x = self._line_h = 0

    def to_json(self) -> Json:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["wattwise", *self.tags],
            "timezone": "browser",
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "links": [],
            "annotations": {"list": self.annotations},
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def _builtin_annotation() -> Json:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


SCOPE_FILTER = '"scope" =~ /^(site|zone:$zone|rack:$rack)$/'
"""Power-budget scopes: the site's, and those of the zones and racks chosen above."""
EVENT_MAX_DAYS = 366
"""No power event lasts longer (``MAX_AHEAD_S`` of ``optimizer/service/power_events.py``;
not imported: the dashboards need none of the optimizer)."""
POWER_EVENT_QUERY = (
    'SELECT "text", "scope", "end_ms" FROM "power_event" '
    f"WHERE time >= ${{__from}}ms - {EVENT_MAX_DAYS}d AND time <= ${{__to}}ms "
    f'AND "end_ms" >= ${{__from}} AND {SCOPE_FILTER}'
)
"""Power events of the site, and of the zones and racks chosen above, whose region overlaps
the dashboard's range. A point is stamped at its event's start, so ``$timeFilter`` would
miss an event that began before the range; ``${__from}`` and ``${__to}`` are the range's
ends in epoch milliseconds. The lower bound on ``time`` only keeps the scan short: no event
that reaches the range started longer ago than the longest an event lasts."""


def power_event_annotation() -> Json:
    """Timed power events (``POST /v1/power-events``) as regions from their start to their
    end, or to their cancellation: the ``power_event`` measurement the optimizer writes."""
    columns = {"textColumn": "text", "tagsColumn": "scope", "timeEndColumn": "end_ms"}
    return {
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "rgba(255, 152, 48, 1)",
        "name": "Power events",
        # Grafana 9 reads the query and its columns here; 10 and 11 from the target.
        "query": POWER_EVENT_QUERY,
        **columns,
        "target": {
            "refId": "Anno",
            "query": POWER_EVENT_QUERY,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            **columns,
        },
    }


def write_all(directory: Path) -> list[Path]:
    """Write every dashboard of the catalog as ``<uid>.json`` under ``directory``."""
    from wattwise.dashboards.catalog import all_boards

    paths = []
    for board in all_boards():
        path = directory / f"{board.uid.removeprefix('wattwise-')}.json"
        path.write_text(json.dumps(board.to_json(), indent=2, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)):
        print(written)
