"""Each kind of broken dashboard or provisioning file is caught, with one line per problem."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import PROVISIONING_DIR
from wattwise.dashboards.check import DASHBOARDS_DIR, lint_all
from wattwise.dashboards.cli import build_dashboards_app
from wattwise.dashboards.provisioning import lint_provisioning

GOOD = json.loads((DASHBOARDS_DIR / "node.json").read_text())


def _panel(board: dict[str, Any], index: int) -> dict[str, Any]:
    return [p for p in board["panels"] if p["type"] != "row"][index]  # type: ignore[no-any-return]


def _overlap(b: dict[str, Any]) -> None:
    _panel(b, 1)["gridPos"] = dict(_panel(b, 0)["gridPos"], x=_panel(b, 0)["gridPos"]["x"] + 2)


def _dup_id_in_row(b: dict[str, Any]) -> None:
    b["panels"].append(
        {
            "type": "row",
            "id": 900,
            "collapsed": True,
            "title": "more",
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": 200},
            "panels": [dict(_panel(b, 0), id=_panel(b, 1)["id"])],
        }
    )


def _target(b: dict[str, Any]) -> dict[str, Any]:
    return _panel(b, 0)["targets"][0]  # type: ignore[no-any-return]


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "overlap": (_overlap, "overlap"),
    "duplicate id in a collapsed row": (_dup_id_in_row, "duplicate panel id"),
    "bad datasource": (lambda b: _panel(b, 2).update(datasource={"uid": "nope"}), "'nope'"),
    "unparseable query": (
        lambda b: _target(b).update(
            query="SELECT mean( FROM gpu WHERE $timeFilter GROUP BY time($__interval)"
        ),
        "unparseable",
    ),
    "unknown field": (
        lambda b: _target(b).update(query=_target(b)["query"].replace("power_w", "powr_w")),
        "unknown field 'powr_w'",
    ),
    "unknown tag": (
        lambda b: _target(b).update(
            query=_target(b)["query"].replace('"host", "gpu"', '"hots", "gpu"')
        ),
        "unknown tag 'hots'",
    ),
    "no $timeFilter": (
        lambda b: _target(b).update(
            query=_target(b)["query"].replace("$timeFilter", "time > now() - 1h")
        ),
        "$timeFilter",
    ),
    "export-only key": (lambda b: b.update(__inputs=[]), "unknown top-level key '__inputs'"),
    "missing templating": (lambda b: b.pop("templating"), "missing required key 'templating'"),
    "grid too wide": (lambda b: _panel(b, 0)["gridPos"].update(w=30), "w must be 1..24"),
    "float grid": (lambda b: _panel(b, 0)["gridPos"].update(h=2.5), "must be integers"),
    "no fieldConfig.defaults": (
        lambda b: _panel(b, 0).update(fieldConfig={}),
        "fieldConfig.defaults",
    ),
    "unknown variable": (
        lambda b: _target(b).update(query=_target(b)["query"].replace("$gpu", "$gpus")),
        "unknown variable $gpus",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_each_breakage_is_reported(tmp_path: Path, name: str) -> None:
    breakage, expected = BREAKAGES[name]
    board = copy.deepcopy(GOOD)
    breakage(board)
    (tmp_path / "node.json").write_text(json.dumps(board))
    problems = lint_all(tmp_path, PROVISIONING_DIR)
    assert problems and all(expected in p for p in problems[:1]), problems
    assert all(p.startswith(str(tmp_path / "node.json")) for p in problems)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{")
    assert "not valid JSON" in lint_all(tmp_path, None)[0]


def test_shipped_dashboards_and_provisioning_are_clean() -> None:
    assert lint_all(DASHBOARDS_DIR, PROVISIONING_DIR) == []


def _provisioning_copy(tmp_path: Path) -> Path:
    root = tmp_path / "provisioning"
    shutil.copytree(PROVISIONING_DIR, root)
    return root


def test_unknown_provisioning_key_is_an_error(tmp_path: Path) -> None:
    root = _provisioning_copy(tmp_path)
    path = root / "datasources" / "wattwise-influxdb.yaml"
    path.write_text(path.read_text().replace("dbName:", "database_name:"))
    (problem,) = lint_provisioning(root)
    assert "unknown key 'datasources.jsonData.database_name'" in problem


def test_missing_api_version_is_an_error(tmp_path: Path) -> None:
    root = _provisioning_copy(tmp_path)
    path = root / "dashboards" / "wattwise.yaml"
    path.write_text(path.read_text().replace("apiVersion: 1", ""))
    (problem,) = lint_provisioning(root)
    assert "apiVersion: 1 missing" in problem


def test_alert_rule_with_unknown_field_or_datasource_is_an_error(tmp_path: Path) -> None:
    root = _provisioning_copy(tmp_path)
    path = root / "alerting" / "wattwise-rules.yaml"
    text = path.read_text().replace('"node_power_w"', '"node_pwr_w"')
    path.write_text(text.replace("datasourceUid: wattwise-influxdb", "datasourceUid: other", 1))
    problems = lint_provisioning(root)
    assert any("'other' is not provisioned" in p for p in problems), problems
    assert any("unknown field 'node_pwr_w'" in p for p in problems), problems


def test_cli_lint_exits_1_with_one_line_per_problem(tmp_path: Path) -> None:
    board = copy.deepcopy(GOOD)
    _overlap(board)
    board["__requires"] = []
    (tmp_path / "node.json").write_text(json.dumps(board))
    args = ["lint", "--dir", str(tmp_path), "--provisioning", str(PROVISIONING_DIR)]
    result = CliRunner().invoke(build_dashboards_app(), args)
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert len(lines) == 2
    assert any("__requires" in x for x in lines) and any("overlap" in x for x in lines)


def test_cli_lint_passes_the_shipped_dashboards() -> None:
    result = CliRunner().invoke(build_dashboards_app(), ["lint"])
    assert result.exit_code == 0 and "8 dashboards OK" in result.output


def test_an_annotation_query_is_checked_like_a_panels(tmp_path: Path) -> None:
    board = json.loads((DASHBOARDS_DIR / "fleet.json").read_text())
    (annotation,) = [a for a in board["annotations"]["list"] if "query" in a]
    annotation["query"] = annotation["query"].replace('"end_ms"', '"end_msec"')
    (tmp_path / "fleet.json").write_text(json.dumps(board))
    problems = lint_all(tmp_path, PROVISIONING_DIR)
    where = f"{tmp_path / 'fleet.json'}: annotation 'Power events'"
    assert problems == [
        f"{where}: unknown field 'end_msec' in power_event",
        f"{where}: unknown name 'end_msec' in WHERE of power_event",
    ]


def test_an_annotation_that_scans_from_the_beginning_of_time_is_reported(tmp_path: Path) -> None:
    """Bounded by ``${__from}`` and ``${__to}`` instead of ``$timeFilter`` (to draw events
    that began before the range), a query still needs both bounds on ``time``."""
    board = json.loads((DASHBOARDS_DIR / "fleet.json").read_text())
    (annotation,) = [a for a in board["annotations"]["list"] if "query" in a]
    assert "$timeFilter" not in annotation["query"]
    annotation["query"] = annotation["query"].replace("time >= ${__from}ms - 366d AND ", "")
    (tmp_path / "fleet.json").write_text(json.dumps(board))
    (problem,) = lint_all(tmp_path, PROVISIONING_DIR)
    assert problem.endswith(
        "annotation 'Power events': query does not use $timeFilter "
        "(nor bound time by ${__from}, ${__to})"
    )
