"""Checks of Grafana's provisioning files, whose reader ignores unknown keys without a word.

A file without ``apiVersion: 1`` is read with the old snake_case keys, so every
camelCase key in it would be lost: both are errors here. Key sets follow
Grafana's documented provisioning formats (datasources, dashboard providers,
alerting file provisioning).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from wattwise.dashboards.lint import check_query

Json = dict[str, Any]
Keys = dict[str, "frozenset[str] | Keys"]

_HEADER = re.compile(r"httpHeader(Name|Value)\d+$")

DATASOURCE_FILE: Keys = {
    "": frozenset(("apiVersion", "datasources", "deleteDatasources", "prune")),
    "datasources": {
        "": frozenset(
            [
                "name",
                "type",
                "access",
                "orgId",
                "uid",
                "url",
                "user",
                "database",
                "basicAuth",
                "basicAuthUser",
                "withCredentials",
                "isDefault",
                "jsonData",
                "secureJsonData",
                "version",
                "editable",
            ]
        ),
        "jsonData": frozenset(
            [
                "version",
                "dbName",
                "httpMode",
                "organization",
                "defaultBucket",
                "maxSeries",
                "timeInterval",
                "timeout",
                "tlsAuth",
                "tlsAuthWithCACert",
                "tlsSkipVerify",
                "keepCookies",
                "manageAlerts",
            ]
        ),
        "secureJsonData": frozenset(
            ["password", "basicAuthPassword", "token", "tlsCACert", "tlsClientCert", "tlsClientKey"]
        ),
    },
    "deleteDatasources": {"": frozenset(("name", "orgId"))},
}
DASHBOARD_FILE: Keys = {
    "": frozenset(("apiVersion", "providers")),
    "providers": {
        "": frozenset(
            [
                "name",
                "orgId",
                "folder",
                "folderUid",
                "type",
                "disableDeletion",
                "updateIntervalSeconds",
                "allowUiUpdates",
                "options",
            ]
        ),
        "options": frozenset(("path", "foldersFromFilesStructure")),
    },
}
ALERTING_FILE: Keys = {
    "": frozenset(
        [
            "apiVersion",
            "groups",
            "deleteRules",
            "contactPoints",
            "deleteContactPoints",
            "policies",
            "resetPolicies",
            "templates",
            "deleteTemplates",
            "muteTimes",
            "deleteMuteTimes",
        ]
    ),
    "groups": {
        "": frozenset(("orgId", "name", "folder", "interval", "rules")),
        "rules": {
            "": frozenset(
                [
                    "uid",
                    "title",
                    "condition",
                    "data",
                    "dashboardUid",
                    "panelId",
                    "noDataState",
                    "execErrState",
                    "for",
                    "annotations",
                    "labels",
                    "isPaused",
                    "keepFiringFor",
                    "notification_settings",
                ]
            ),
            "data": {
                "": frozenset(
                    ("refId", "queryType", "relativeTimeRange", "datasourceUid", "model")
                ),
                "relativeTimeRange": frozenset(("from", "to")),
            },
        },
    },
    "deleteRules": {"": frozenset(("orgId", "uid"))},
}
NO_DATA_STATES = frozenset(("Alerting", "NoData", "OK", "KeepLast"))
EXEC_ERR_STATES = frozenset(("Alerting", "Error", "OK", "KeepLast"))
KINDS = {"datasources": DATASOURCE_FILE, "dashboards": DASHBOARD_FILE, "alerting": ALERTING_FILE}


def provisioning_files(root: Path) -> list[Path]:
    """Every provisioning YAML under ``root``, the shipped alternatives (``.example``) too."""
    return sorted(p for p in root.rglob("*") if p.name.endswith((".yaml", ".yml", ".yaml.example")))


def load(path: Path) -> Json:
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def datasource_names(root: Path) -> frozenset[str]:
    """Names and uids of the datasources the provisioning files define."""
    names: set[str] = set()
    for path in provisioning_files(root / "datasources"):
        for ds in load(path).get("datasources") or []:
            names.update(str(ds[k]) for k in ("name", "uid") if k in ds)
    return frozenset(names)


def lint_provisioning(root: Path) -> list[str]:
    problems = []
    datasources = datasource_names(root)
    for path in provisioning_files(root):
        kind = path.relative_to(root).parts[0]
        try:
            document = load(path)
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {e}")
            continue
        if document.get("apiVersion") != 1:
            problems.append(f"{path}: apiVersion: 1 missing (Grafana would read snake_case keys)")
        if kind not in KINDS:
            problems.append(f"{path}: not under datasources/, dashboards/ or alerting/")
            continue
        found = unknown_keys(document, KINDS[kind], "")
        if kind == "alerting":
            found += _alert_rules(document, datasources)
        problems += [f"{path}: {p}" for p in found]
    return problems


def unknown_keys(node: object, keys: Keys | frozenset[str], where: str) -> list[str]:
    """Keys Grafana does not know, at any depth the key set describes."""
    items = node if isinstance(node, list) else [node]
    problems = []
    allowed = keys if isinstance(keys, frozenset) else keys[""]
    assert isinstance(allowed, frozenset)
    for item in (i for i in items if isinstance(i, dict)):
        for key, value in item.items():
            path = f"{where}.{key}" if where else key
            if key not in allowed and not _HEADER.match(key):
                problems.append(f"unknown key {path!r} (Grafana would ignore it)")
            elif isinstance(keys, dict) and key in keys:
                problems += unknown_keys(value, keys[key], path)
    return problems


def _alert_rules(document: Json, datasources: frozenset[str]) -> list[str]:
    problems = []
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            where = f"rule {rule.get('uid')!r}"
            refs = {d.get("refId") for d in rule.get("data", [])}
            if rule.get("condition") not in refs:
                problems.append(f"{where}: condition {rule.get('condition')!r} is no refId")
            if rule.get("noDataState") not in NO_DATA_STATES:
                problems.append(f"{where}: noDataState {rule.get('noDataState')!r}")
            if rule.get("execErrState") not in EXEC_ERR_STATES:
                problems.append(f"{where}: execErrState {rule.get('execErrState')!r}")
            for data in rule.get("data", []):
                problems += [
                    f"{where} {data.get('refId')!r}: {p}" for p in _rule_query(data, datasources)
                ]
    return problems


def _rule_query(data: Json, datasources: frozenset[str]) -> list[str]:
    uid = data.get("datasourceUid")
    if uid == "__expr__":
        return []
    if uid not in datasources:
        return [f"datasourceUid {uid!r} is not provisioned"]
    return check_query(str(data.get("model", {}).get("query", "")), {}, table=True)
