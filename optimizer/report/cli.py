"""``wattwise report [--config FILE] [--store embedded|influx|prometheus] [--url URL] [--since 24h]
--out FILE``.

Reads the same settings as ``wattwise optimizer serve``; the models are fitted on
the report's window, so the curves drawn are fitted on the samples drawn.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import Progress

from wattwise.clock import SystemClock
from wattwise.errors import ConfigError
from wattwise.optimizer.service.cli import command_config
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.settings import DEFAULT_CONFIG_PATH, OptimizerConfig
from wattwise.optimizer.store import open_store

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration_s(text: str, *, key: str = "--since") -> float:
    """Seconds in ``30m``, ``24h``, ``7d`` (units s, m, h, d, w); else :class:`ConfigError`."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ConfigError(key, text, "a positive duration such as 30m, 24h or 7d (s, m, h, d, w)")
    return seconds


def report_config(
    path: Path,
    store: str | None,
    since_s: float,
    clusters: str | None,
    zones: str | None,
    url: str | None = None,
) -> OptimizerConfig:
    overrides = {
        "store.kind": store,
        "store.url": url,
        "models.window_s": since_s,
        "shard.clusters": _split(clusters),
        "shard.zones": _split(zones),
    }
    return command_config(path, overrides)


def check_out(out: Path) -> None:
    """Refuse a report path that cannot be written, before a minute of fitting."""
    parent = out.parent
    if out.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("--out", str(out), "a file in an existing directory this user can write")


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def report_command(
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write")],
    since: Annotated[str, typer.Option(help="window to show and fit on: 30m, 24h, 7d")] = "24h",
    config_path: Annotated[
        Path, typer.Option("--config", help="optimizer TOML file")
    ] = DEFAULT_CONFIG_PATH,
    store: Annotated[
        Literal["influx", "embedded", "prometheus"] | None,
        typer.Option("--store", help="telemetry store"),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="the store's URL: InfluxDB or a Prometheus query API")
    ] = None,
    clusters: Annotated[str | None, typer.Option(help="comma-separated clusters")] = None,
    zones: Annotated[str | None, typer.Option(help="comma-separated zones")] = None,
) -> None:
    """Write a self-contained HTML report: fleet power and energy, power models, caps, cooling."""
    since_s = parse_duration_s(since)
    check_out(out)
    config = report_config(config_path, store, since_s, clusters, zones, url)
    clock = SystemClock()
    telemetry = open_store(config.store, clock, must_exist=True)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("refit", total=1.0)

            def progress(step: str, share: float) -> None:
                bar.update(task, completed=share, description=step)

            from wattwise.optimizer.report.write import (
                write_report,  # matplotlib loads only for this command
            )

            write_report(Engine(telemetry, config, clock), since_s, out, progress)
    finally:
        telemetry.close()
    typer.echo(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
