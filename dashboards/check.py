"""Where the dashboards and provisioning files live, and one call that lints them all."""

from __future__ import annotations

from pathlib import Path

from wattwise.dashboards.lint import lint_dashboard
from wattwise.dashboards.provisioning import datasource_names, lint_provisioning

DASHBOARDS_DIR = Path(__file__).parent
"""The shipped dashboards: package data beside this module."""
CHECKOUT_PROVISIONING_DIR = Path("deploy") / "grafana" / "provisioning"
"""Grafana provisioning, relative to the root of a source checkout (no wheel ships it)."""

DEFAULT_DATASOURCE = "wattwise InfluxDB"
"""The provisioned datasource the dashboards are mapped to by name."""


def dashboard_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def lint_all(dashboards: Path, provisioning: Path | None) -> list[str]:
    """Every problem of every dashboard under ``dashboards`` and provisioning file."""
    datasources = datasource_names(provisioning) if provisioning else frozenset()
    problems = lint_provisioning(provisioning) if provisioning else []
    files = dashboard_files(dashboards)
    if not files:
        problems.append(f"{dashboards}: no dashboards (*.json)")
    for path in files:
        problems += lint_dashboard(path, datasources)
    return problems
