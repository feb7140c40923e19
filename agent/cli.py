"""``wattwise agent …``: run, probe, check-config, install, apply-power-plan."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wattwise.agent.config import DEFAULT_CONFIG_PATH, AgentConfig, load_config
from wattwise.agent.power_state import DEFAULT_STATE_FILE
from wattwise.agent.preflight import check_runtime
from wattwise.agent.sources import ProbeOutcome
from wattwise.common.command_group import command_group
from wattwise.common.plan_contract import APPLIER_INTERVAL_S
from wattwise.errors import ConfigError

ConfigOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional at runtime here
    typer.Option("--config", help=f"TOML file (default {DEFAULT_CONFIG_PATH})"),
]
SourceOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--source", help="nvml (real GPUs) or sim (simulated fleet)"),
]


def _load(config: Path | None, overrides: dict[str, Any]) -> AgentConfig:
    path = config if config is not None else DEFAULT_CONFIG_PATH
    return load_config(path, overrides, os.environ, require_file=config is not None)


def run(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    sim_nodes: Annotated[Optional[int], typer.Option(help="simulated nodes")] = None,  # noqa: UP045
    sim_gpus_per_node: Annotated[Optional[int], typer.Option(help="GPUs per node")] = None,  # noqa: UP045
    sim_seed: Annotated[Optional[int], typer.Option(help="simulation seed")] = None,  # noqa: UP045
    interval: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--interval", metavar="SECONDS", help="GPU sampling interval"),
    ] = None,
    influx_url: Annotated[Optional[str], typer.Option(help="InfluxDB URL")] = None,  # noqa: UP045
    influx_db: Annotated[Optional[str], typer.Option(help="InfluxDB 1.x database")] = None,  # noqa: UP045
    wal_dir: Annotated[Optional[Path], typer.Option(help="write-ahead log directory")] = None,  # noqa: UP045
    store: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="influx (default) or embedded (local SQLite)"),
    ] = None,
) -> None:
    """Sample the sources and deliver every sample to the store until stopped."""
    from wattwise.agent.runtime import AgentRuntime

    overrides = {
        "agent.source": source,
        "agent.sim.nodes": sim_nodes,
        "agent.sim.gpus_per_node": sim_gpus_per_node,
        "agent.sim.seed": sim_seed,
        "agent.gpu_interval_s": interval,
        "influx.url": influx_url,
        "influx.database": influx_db,
        "wal.dir": wal_dir,
        "store.kind": store,
    }
    settings = _load(config, overrides)
    check_runtime(settings, os.environ)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runtime = AgentRuntime.from_config(settings)
    runtime.run(stop)


def probe(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Read every source once and print what it got; exit 1 if nothing is readable."""
    from wattwise.agent.sources import probe_sources
    from wattwise.clock import SystemClock

    settings = _load(config, {"agent.source": source})
    results = probe_sources(settings, SystemClock(), dict(os.environ))
    readings = [r for outcome in results for r in outcome.readings]
    if as_json:
        typer.echo(json.dumps([outcome.as_dict() for outcome in results], indent=2))
    else:
        _print_probe(results)
    if not any(r.present_fields() for r in readings):
        raise typer.Exit(1)


def check_config(
    file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(help=f"the TOML file to validate (default {DEFAULT_CONFIG_PATH})"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate a configuration file without starting anything (FILE or --config FILE)."""
    if file is not None and config is not None and file != config:
        raise ConfigError("--config", str(config), f"the same file as the argument {file}")
    file = file or config or DEFAULT_CONFIG_PATH
    settings = load_config(file, None, os.environ, require_file=True)
    check_runtime(settings, os.environ)
    target = (
        settings.influx.url if settings.store.kind == "influx" else settings.store.embedded_path
    )
    typer.echo(
        f"{file}: OK (source {settings.agent.source}, store {settings.store.kind} {target}, "
        f"WAL {settings.wal.dir})"
    )


def install(
    config: Annotated[
        Path, typer.Option("--config", help="where the config goes")
    ] = DEFAULT_CONFIG_PATH,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the steps only")] = False,
    power_plan: Annotated[
        bool,
        typer.Option(
            "--power-plan",
            help="also install and enable the opt-in power-plan applier's unit, which sets "
            "GPU power limits as root (docs/power-budgets.md)",
        ),
    ] = False,
) -> None:
    """Create the system user, the config skeleton and the systemd unit, and enable it."""
    from wattwise.agent.install import install_agent
    from wattwise.agent.install_power_plan import PowerPlanUnit

    # Only the flag ever creates a PowerPlanUnit: without it the applier is left alone.
    plan = PowerPlanUnit.shipped() if power_plan else None
    install_agent(config, dry_run=dry_run, echo=typer.echo, power_plan=plan)


def uninstall(
    config: Annotated[
        Path, typer.Option("--config", help="the agent's config, to find its write-ahead log")
    ] = DEFAULT_CONFIG_PATH,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="also remove the write-ahead log, the configuration and secrets, the "
            "drop-ins and the system user",
        ),
    ] = False,
    discard_unsent: Annotated[
        bool,
        typer.Option(
            "--discard-unsent",
            help="with --purge: delete the log even if it holds lines never delivered",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the steps only")] = False,
) -> None:
    """Stop and remove the agent's units (the power-plan applier's first); keep its data
    unless --purge."""
    from wattwise.agent.uninstall import uninstall_agent

    uninstall_agent(
        purge=purge,
        discard_unsent=discard_unsent,
        dry_run=dry_run,
        config_path=config,
        echo=typer.echo,
    )


def apply_power_plan(
    optimizer_url: Annotated[
        str, typer.Option(help="the optimizer's API, e.g. https://optimizer:8000")
    ],
    token_file: Annotated[
        Path, typer.Option(help="file holding an API token with the read scope (chmod 600)")
    ],
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would be set; change nothing")
    ] = False,
    interval_s: Annotated[
        float, typer.Option(metavar="SECONDS", help="how often to ask for the plan")
    ] = APPLIER_INTERVAL_S,
    silent_after_s: Annotated[
        float,
        typer.Option(metavar="SECONDS", help="defaults back after this long without a plan"),
    ] = 600.0,
    state_file: Annotated[
        Path, typer.Option(help="what this applier changed, to undo after a crash")
    ] = DEFAULT_STATE_FILE,
    host: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="this node's name in the plans (default: its host name)"),
    ] = None,
    timeout_s: Annotated[
        float, typer.Option(metavar="SECONDS", help="for each request to the optimizer")
    ] = 10.0,
    ca_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="CA bundle the optimizer's certificate is checked against"),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="do not check the optimizer's certificate")
    ] = False,
) -> None:
    """Apply the optimizer's power budgets to this node's GPUs (root; opt-in).

    Each GPU gets the lowest limit any plan gives it; GPUs no plan caps any more, and
    all of them when the optimizer is silent or the command stops, go back to their
    default limits. docs/power-budgets.md has the rules.
    """
    from wattwise.agent.power_command import ApplierOptions
    from wattwise.agent.power_command import apply_power_plan as apply

    options = ApplierOptions(
        optimizer_url=optimizer_url,
        token_file=token_file,
        once=once,
        dry_run=dry_run,
        interval_s=interval_s,
        silent_after_s=silent_after_s,
        state_file=state_file,
        host=host or "",
        timeout_s=timeout_s,
        ca_file=ca_file,
        insecure=insecure,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    status = apply(options, stop=stop, echo=typer.echo)
    if status:
        raise typer.Exit(status)


def _print_probe(results: list[ProbeOutcome]) -> None:
    """Each source, then each reading: its measurement and every tag on one line, then
    its fields a line each. Nothing is cut, and no text is read as rich markup (a bracketed
    path in an error, ``[/redfish/v1]``, would raise MarkupError)."""
    console = Console(highlight=False)
    for outcome in results:
        if outcome.error:
            console.print(Text.assemble((outcome.source, "red"), f": {outcome.error}"))
            continue
        count = len(outcome.readings)
        console.print(Text(f"{outcome.source}: {count} reading{'s' * (count != 1)}", "bold"))
        for reading in outcome.readings:
            tags = " ".join(f"{k}={v}" for k, v in sorted(reading.tags.items()))
            console.print(Text(f"{reading.measurement} {tags}"), soft_wrap=True)
            fields = Table(box=None, show_header=False, padding=(0, 0, 0, 2))
            fields.add_column(no_wrap=True)
            fields.add_column(no_wrap=True, justify="right")
            for name, value in reading.fields.items():
                fields.add_row(Text(name), Text(_probe_value(value)))
            console.print(fields)


def _probe_value(value: object) -> str:
    """A field as an operator reads it: integral floats without decimals, others to 3
    decimals (6 significant digits under 1), ``missing`` for a failed read."""
    if value is None:
        return "missing"
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= 1e15:
            return repr(value)
        if value.is_integer():
            return f"{value:.0f}"
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.6g}"
    return str(value)


def build_agent_app() -> typer.Typer:
    app = command_group(no_args_is_help=True, help="The node agent.")
    app.command()(run)
    app.command()(probe)
    app.command("check-config")(check_config)
    app.command()(install)
    app.command()(uninstall)
    app.command("apply-power-plan")(apply_power_plan)
    return app
