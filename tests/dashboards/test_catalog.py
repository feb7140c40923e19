"""Every query of every panel, variable and alert rule, run against a real influxd.

A panel that would show "No data" on a fleet that has the data it is about
fails here. The dashboards are also checked to be what the catalog generates.
"""

from __future__ import annotations

import json
import operator
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PROVISIONING_DIR
from tests.dashboards.fleet_data import FleetData, S, budget_plan
from tests.influxd import InfluxServer
from wattwise.clock import ManualClock
from wattwise.dashboards.build import write_all
from wattwise.dashboards.check import DASHBOARDS_DIR, dashboard_files
from wattwise.dashboards.influxql import substitute
from wattwise.dashboards.lint import iter_panels
from wattwise.dashboards.provisioning import load
from wattwise.optimizer.service import lines
from wattwise.optimizer.service.power_events import MAX_AHEAD_S, EventBook, store_writer
from wattwise.optimizer.store import InfluxStore

MAY_BE_EMPTY = {("fleet", "Power-capped / thermally throttled GPUs", "B")}
"""(dashboard, panel, refId) that are empty while no GPU is thermally throttled
(the simulated ten minutes stay cool); the panel shows 0 through its noValue."""

BOARDS = {p.stem: json.loads(p.read_text()) for p in dashboard_files(DASHBOARDS_DIR)}
TARGETS = [
    pytest.param(name, panel, target, id=f"{name}/{panel['id']}/{target['refId']}")
    for name, board in BOARDS.items()
    for panel in iter_panels(board["panels"])
    for target in panel.get("targets", [])
]
RULES_FILE = PROVISIONING_DIR / "alerting" / "wattwise-rules.yaml"
RULES = [r for g in load(RULES_FILE)["groups"] for r in g["rules"]]


def _time_filter(panel: dict[str, Any], data: FleetData) -> str:
    relative = panel.get("timeFrom", "")
    if relative and not relative.startswith("now/"):
        return f"time >= now() - {relative}"
    # "today" and "this month" both contain the ten minutes just written
    return f"time >= {data.start_ns} AND time <= {data.end_ns}"


def _run(server: InfluxServer, query: str, db: str) -> list[dict[str, Any]]:
    (result,) = server.query(query, db)["results"]
    assert "error" not in result, (query, result)
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def _has_values(series: list[dict[str, Any]]) -> bool:
    return any(v is not None for s in series for row in s["values"] for v in row[1:])


def _query(panel: dict[str, Any], target: dict[str, Any], data: FleetData, host: str) -> str:
    variables = {"cluster": ".*", "zone": ".*", "rack": ".*", "host": host, "gpu": ".*"}
    variables["group_by"] = "rack"
    interval = panel.get("interval", "10s")
    time_filter = _time_filter(panel, data)
    return substitute(target["query"], variables, time_filter=time_filter, interval=interval)


@pytest.mark.parametrize(("board", "panel", "target"), TARGETS)
def test_every_panel_query_returns_data_for_all_hosts_and_for_one(
    influxd: InfluxServer, fleet_db: FleetData, board: str, panel: Any, target: Any
) -> None:
    for host in (".*", fleet_db.hosts[0]):
        series = _run(influxd, _query(panel, target, fleet_db, host), fleet_db.db)
        if (board, panel["title"], target["refId"]) not in MAY_BE_EMPTY:
            assert _has_values(series), f"{panel['title']} {target['refId']} shows No data"


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_template_variable_lists_values(
    influxd: InfluxServer, fleet_db: FleetData, board: str
) -> None:
    for variable in BOARDS[board]["templating"]["list"]:
        if variable["type"] == "query":
            query = substitute(
                variable["query"],
                {"cluster": ".*", "zone": ".*", "rack": ".*", "host": ".*"},
                time_filter="",
                interval="",
            )
            assert _has_values(_run(influxd, query, fleet_db.db)), variable["name"]


def _rule_series(server: InfluxServer, data: FleetData, uid: str) -> dict[str, list[Any]]:
    """The rule's InfluxQL query over its relative range: the values per series key, nulls
    dropped as the rules' reduce step (``mode: dropNN``) drops them."""
    (rule,) = [r for r in RULES if r["uid"] == uid]
    (query_data,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    seconds = query_data["relativeTimeRange"]["from"]
    query = substitute(
        query_data["model"]["query"], {}, time_filter=f"time >= now() - {seconds}s", interval=""
    )
    series = _run(server, query, data.db)
    # A bucket can be empty when the query's window edge falls between two samples
    # (the regression this pins made the rack rule's last value None in CI).
    return {
        ",".join(s.get("tags", {}).values()): [r[-1] for r in s["values"] if r[-1] is not None]
        for s in series
    }


def test_alert_silent_agent_fires_only_for_the_agent_that_stopped(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    values = _rule_series(influxd, fleet_db, "wattwise-agent-silent")
    assert set(values) == set(fleet_db.hosts)
    assert values[fleet_db.silent_host][-1] == 0
    assert all(v[-1] > 0 for host, v in values.items() if host != fleet_db.silent_host)


def test_alert_dropping_data_fires_only_for_the_agent_that_drops(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    values = _rule_series(influxd, fleet_db, "wattwise-agent-dropping")
    assert values[fleet_db.dropping_host][-1] > 0
    assert all(v[-1] == 0 for host, v in values.items() if host != fleet_db.dropping_host)


def test_alert_near_slowdown_reports_headroom_of_every_reporting_gpu(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    values = _rule_series(influxd, fleet_db, "wattwise-gpu-near-slowdown")
    # the GPU that failed a minute ago still has its last temperature in the window
    assert len(values) == 2 * len(fleet_db.hosts)
    assert all(0 < v[-1] < 87 for v in values.values())


def test_alert_rack_power_sums_the_nodes_of_each_rack(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    values = _rule_series(influxd, fleet_db, "wattwise-rack-over-budget")
    assert len(values) == 4
    one_node = _run(
        influxd,
        'SELECT last("node_power_w") FROM "host" WHERE time >= now() - 10m GROUP BY "host"',
        fleet_db.db,
    )
    assert all(v[-1] > max(s["values"][0][1] for s in one_node) for v in values.values())


def test_dashboard_files_are_what_the_catalog_generates(tmp_path: Path) -> None:
    for path in write_all(tmp_path):
        assert path.read_text() == (DASHBOARDS_DIR / path.name).read_text(), path.name
    assert len(BOARDS) == 8


def _firing(server: InfluxServer, data: FleetData, uid: str) -> set[tuple[str, ...]]:
    """What the rule fires for, evaluated as Grafana does: the query's last non-null value
    per series (B) against the threshold (C); each series as (host, GPU[, XID])."""
    (rule,) = [r for r in RULES if r["uid"] == uid]
    (condition,) = [d for d in rule["data"] if d["refId"] == rule["condition"]]
    (evaluator,) = [c["evaluator"] for c in condition["model"]["conditions"]]
    compare = {"gt": operator.gt, "lt": operator.lt}[evaluator["type"]]
    (limit,) = evaluator["params"]
    (query_data,) = [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]
    seconds = query_data["relativeTimeRange"]["from"]
    query = substitute(
        query_data["model"]["query"], {}, time_filter=f"time >= now() - {seconds}s", interval=""
    )
    fired = set()
    for series in _run(server, query, data.db):
        tags = series.get("tags", {})
        values = [row[-1] for row in series["values"] if row[-1] is not None]
        if values and compare(values[-1], limit):
            fired.add(tuple(tags[t] for t in ("host", "gpu", "xid") if t in tags))
    return fired


def test_alert_fatal_xid_fires_per_gpu_and_code_but_not_for_application_errors(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    dbe, remap, nvlink = (fleet_db.faults[k] for k in ("dbe", "remap_failed", "nvlink"))
    assert _firing(influxd, fleet_db, "wattwise-gpu-fatal-xid") == {
        (*dbe, "48"),
        (*dbe, "63"),  # the remap a double-bit error schedules
        (*remap, "64"),
        (*nvlink, "74"),
        (*fleet_db.failed_gpu, "79"),
    }  # XID 13 on fleet_db.faults["app"] is the application's: no alert


def test_alert_uncorrectable_ecc_fires_for_the_gpu_with_a_double_bit_error(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    assert _firing(influxd, fleet_db, "wattwise-gpu-uncorrectable-ecc") == {fleet_db.faults["dbe"]}


def test_alert_row_remap_failed_fires_for_that_gpu_only(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    fired = _firing(influxd, fleet_db, "wattwise-gpu-row-remap-failed")
    assert fired == {fleet_db.faults["remap_failed"]}


def test_alert_off_the_bus_fires_for_the_lost_gpu_only(
    influxd: InfluxServer, fleet_db: FleetData
) -> None:
    assert _firing(influxd, fleet_db, "wattwise-gpu-off-the-bus") == {fleet_db.failed_gpu}


ANNOTATIONS = [
    pytest.param(name, annotation, id=f"{name}/{annotation['name']}")
    for name, board in BOARDS.items()
    for annotation in board["annotations"]["list"]
    if annotation.get("query")
]


def _annotation_rows(
    server: InfluxServer,
    annotation: dict[str, Any],
    db: str,
    variables: dict[str, str],
    range_ms: tuple[int, int],
) -> list[dict[str, Any]]:
    """The annotation's rows as Grafana gets them for an absolute range: the query with the
    range substituted as Grafana does (``$timeFilter`` and ``${__from}``, ``${__to}``), read
    with ``epoch=ms``; in order of time."""
    assert annotation["target"]["query"] == annotation["query"]
    from_ms, to_ms = range_ms
    query = substitute(
        annotation["query"],
        variables,
        time_filter=f"time >= {from_ms}ms and time <= {to_ms}ms",
        interval="",
        range_ms=range_ms,
    )
    response = httpx.get(
        f"{server.url}/query", params={"q": query, "db": db, "epoch": "ms"}, timeout=30
    )
    (result,) = response.json()["results"]
    assert "error" not in result, (query, result)
    rows = []
    for series in result.get("series", []):
        columns = series["columns"]
        wanted = (annotation["textColumn"], annotation["tagsColumn"], annotation["timeEndColumn"])
        assert set(wanted) <= set(columns)
        rows += [dict(zip(columns, values, strict=True)) for values in series["values"]]
    return sorted(rows, key=lambda r: (r["time"], r["text"]))


def test_power_event_annotation_draws_each_event_once_as_it_ran(influxd: InfluxServer) -> None:
    """Events added and cancelled through the optimizer's book, written to a real influxd
    by the optimizer's store, read back by the dashboards' annotation query as Grafana
    sends it (``epoch=ms``): one region per event, ending where the event really ended."""
    db = "power_events"
    influxd.create_database(db)
    now_ns = time.time_ns() // S * S
    clock = ManualClock(start_ns=now_ns)
    store = InfluxStore(influxd.url, database=db)
    book = EventBook(None, clock, store_writer(store))
    kept = book.add("rack:r01", 30_000.0, now_ns - 3600 * S, now_ns + 3600 * S, "feed B")
    cut = book.add("site", 9e5, now_ns - 1800 * S, now_ns + 7200 * S, "")
    clock.advance(60.0)
    book.cancel(cut.id)
    book.add("rack:r02", 30_000.0, now_ns - 600 * S, now_ns + 600 * S, "other rack")
    store.close()
    (annotation,) = [a for a in BOARDS["fleet"]["annotations"]["list"] if "query" in a]
    now_ms = now_ns // 10**6
    rows = _annotation_rows(
        influxd,
        annotation,
        db,
        {"zone": ".*", "rack": "(r01)"},  # Grafana's regex form of one chosen rack
        (now_ms - 6 * 3_600_000, now_ms),
    )
    assert [(r["scope"], r["time"], r["end_ms"]) for r in rows] == [
        ("rack:r01", kept.start_ns // 10**6, kept.end_ns // 10**6),
        ("site", cut.start_ns // 10**6, (now_ns + 60 * S) // 10**6),
    ]
    assert rows[0]["text"] == "rack:r01 limited to 30,000 W: feed B"
    assert rows[1]["text"].endswith("(cancelled)")


@pytest.mark.parametrize(("board", "annotation"), ANNOTATIONS)
def test_power_event_started_before_the_range_is_drawn(
    influxd: InfluxServer, board: str, annotation: dict[str, Any]
) -> None:
    """An operator looking at the last hour during a longer event sees its region. A point
    is stamped at its event's start, so the query must not keep to points of the range: it
    returns every event whose region overlaps the range, and no other, to the millisecond."""
    db = f"power_events_{board}"
    influxd.create_database(db)
    hour, ms = 3600 * S, 10**6
    to_ns = 1_750_000_000 * S  # a fixed range: the hour before it
    from_ns = to_ns - hour
    windows = {
        "began before the range, ends in it": (from_ns - 2 * hour, from_ns + hour // 2),
        # as long as an event may last: the query looks back far enough for it
        "runs across the range": (to_ns + hour - MAX_AHEAD_S * S, to_ns + hour),
        "ended just before the range": (from_ns - hour, from_ns - ms),
        "starts just after the range": (to_ns + ms, to_ns + hour),
    }
    store = InfluxStore(influxd.url, database=db)
    # the book refuses events that already ended: it is set to before the earliest end
    book = EventBook(None, ManualClock(start_ns=from_ns - 2 * hour), store_writer(store))
    added = {why: book.add("site", 20_000.0, *window, why) for why, window in windows.items()}
    store.close()
    variables = {"zone": ".*", "rack": ".*"}
    rows = _annotation_rows(influxd, annotation, db, variables, (from_ns // ms, to_ns // ms))
    drawn = [added[why] for why in ("runs across the range", "began before the range, ends in it")]
    assert [(r["text"], r["time"], r["end_ms"]) for r in rows] == [
        (f"site limited to 20,000 W: {e.reason}", e.start_ns // ms, e.end_ns // ms) for e in drawn
    ]


def _panel(board: str, title: str) -> dict[str, Any]:
    (panel,) = [p for p in iter_panels(BOARDS[board]["panels"]) if p.get("title") == title]
    return panel


def test_power_budget_row_shows_each_chosen_scopes_plans_as_the_optimizer_wrote_them(
    influxd: InfluxServer,
) -> None:
    """Two refreshes' plans, encoded by the optimizer and written by its store to a real
    influxd, read back by the row's queries as Grafana substitutes them with one zone and
    one rack chosen: the site's, that zone's and that rack's plans, number for number."""
    db = "power_budgets"
    influxd.create_database(db)
    minute = 60 * S
    now_ns = time.time_ns() // minute * minute
    first_ns, second_ns = now_ns - 10 * minute, now_ns - 5 * minute
    scopes = ["site", "zone:z1", "zone:z2", "rack:r01", "rack:r02"]
    written = {
        first_ns: {s: budget_plan(s, 30_000.0 + i, 33_912.5 + i, 3) for i, s in enumerate(scopes)},
        second_ns: {s: budget_plan(s, 21_000.0 + i, 20_000.25, 1) for i, s in enumerate(scopes)},
    }
    # r01's limit lifted at the second refresh: default limits hold it, no plan
    written[second_ns]["rack:r01"] = budget_plan("rack:r01", 1e6, 20_000.25, 1)
    store = InfluxStore(influxd.url, database=db)
    for at_ns, plans in written.items():
        store.write(lines.encode(lines.budget_readings(list(plans.values()), at_ns)))
    store.close()
    chosen = {"site", "zone:z1", "rack:r01"}
    variables = {"cluster": ".*", "zone": "(z1)", "rack": "(r01)", "host": ".*", "gpu": ".*"}
    time_filter = f"time >= {first_ns - minute} AND time <= {now_ns}"

    over_time = _panel("recommendations", "Limit and predicted peak per scope")
    fields = ["limit_w", "predicted_peak_before_w", "predicted_peak_after_w"]
    assert [t["refId"] for t in over_time["targets"]] == ["A", "B", "C"]
    for field, target in zip(fields, over_time["targets"], strict=True):
        assert "$tag_scope" in target["alias"]
        query = substitute(target["query"], variables, time_filter=time_filter, interval="1m")
        series = {s["tags"]["scope"]: dict(s["values"]) for s in _run(influxd, query, db)}
        assert set(series) == chosen, field
        for scope, values in series.items():
            before, after = (getattr(written[t][scope], field) for t in (first_ns, second_ns))
            assert values[first_ns - minute] is None  # nothing before the first refresh
            # each refresh's value, held until the next one
            assert values[first_ns] == values[first_ns + minute] == before, (scope, field)
            assert values[second_ns] == values[now_ns] == after, (scope, field)

    newest = _panel("recommendations", "Newest plan per scope")
    (target,) = newest["targets"]
    assert target["resultFormat"] == "table"
    query = substitute(target["query"], variables, time_filter=time_filter, interval="")
    rows = {str(r["scope"]): r for r in influxd.rows(query, db)}
    assert set(rows) == chosen
    for scope, row in rows.items():
        plan = written[second_ns][scope]
        assert {k: v for k, v in row.items() if k not in ("time", "scope")} == {
            "limit_w": plan.limit_w,
            "predicted_peak_after_w": plan.predicted_peak_after_w,
            "work_lost_pct": plan.work_lost_pct,
            "capped_gpus": len(plan.caps),
            "applied_share": plan.applied_share,
            "planned": int(plan.planned),
            "feasible": int(plan.feasible),
        }, scope
    assert (rows["site"]["planned"], rows["site"]["capped_gpus"]) == (1, 1)
    assert (rows["rack:r01"]["planned"], rows["rack:r01"]["capped_gpus"]) == (0, 0)
    # the 0/1 columns are shown in words: the mappings know the values written
    mappings = {
        o["matcher"]["options"]: p["value"][0]["options"]
        for o in newest["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "mappings"
    }
    assert {k: m["1"]["text"] for k, m in mappings.items()} == {"planned": "yes", "feasible": "yes"}
    assert all(str(r[k]) in m for r in rows.values() for k, m in mappings.items())
