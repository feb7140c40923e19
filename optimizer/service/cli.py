"""``wattwise optimizer serve|init-db``, ``wattwise recommend caps|cooling|place|budget`` and
``wattwise models [backtest]``: the service, and the same computations run once from the
command line.

The one-shot commands read the same configuration as ``serve`` (file, environment,
flags). They use the models the service keeps in its registry when there are any, and
say so; otherwise, or with ``--refit``, they fit them here with a progress bar (and say
that). They print a table or JSON. ``wattwise demo`` writes ``demo-data/optimizer.toml``,
so ``--config demo-data/optimizer.toml`` points every command at the demo's data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress

from wattwise.clock import SystemClock
from wattwise.common.command_group import command_group
from wattwise.common.strict_json import clean
from wattwise.errors import ConfigError
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.service import printing
from wattwise.optimizer.service.backtesting import SplitError, run_backtest
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.fitted import KeptModels
from wattwise.optimizer.service.power_events import EventBook
from wattwise.optimizer.service.settings import (
    DEFAULT_CONFIG_PATH,
    OptimizerConfig,
    load_optimizer_config,
)
from wattwise.optimizer.service.views import iso
from wattwise.optimizer.store import open_store
from wattwise.optimizer.store.initdb import init_db_command
from wattwise.settings import OPTIMIZER_ENV_PREFIX

ConfigOpt = Annotated[Path, typer.Option("--config", help="optimizer TOML file")]
StoreOpt = Annotated[
    Literal["influx", "embedded", "prometheus"] | None,
    typer.Option("--store", help="telemetry store"),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(help="the store's URL: InfluxDB, or a Prometheus-compatible query API"),
]
ListOpt = Annotated[str | None, typer.Option(help="comma-separated; this instance's share")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts instead of a table")]
RefitOpt = Annotated[
    bool, typer.Option("--refit", help="fit the models here instead of using the kept ones")
]


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def command_config(path: Path, overrides: dict[str, Any]) -> OptimizerConfig:
    """The settings of a command (``serve``, ``recommend``, ``models``, ``report``).

    Without a configuration file nothing names a store, and the defaults would send
    the command to an InfluxDB on localhost that is not there ("connection refused"),
    or have ``serve`` log a failed refit every interval and answer 503, not a word
    about the file:
    refused here instead, saying what to write or which flag reads the demo's data.
    A store named by a flag or a ``WATTWISE_OPTIMIZER_STORE__…`` variable runs without it.
    """
    store_given = overrides.get("store.kind") is not None or any(
        name.startswith(f"{OPTIMIZER_ENV_PREFIX}STORE__") for name in os.environ
    )
    if not path.exists() and not store_given:  # a directory: the loader says so
        raise ConfigError(
            "--config",
            str(path),
            f"an optimizer configuration file: write {DEFAULT_CONFIG_PATH} from "
            "deploy/optimizer.toml.example (store.kind = 'embedded' reads the embedded "
            "store), or read the demo's data with --config demo-data/optimizer.toml",
            problem="does not exist",
        )
    return load_optimizer_config(path, overrides, os.environ)


@contextmanager
def _engine(config: OptimizerConfig, *, events: bool = False) -> Iterator[Engine]:
    """An engine on the configured store; ``events``: planning with the power events the
    service keeps in ``budgets.events_file`` (read here, never written)."""
    clock = SystemClock()
    store = open_store(config.store, clock, must_exist=True)
    try:
        book = EventBook(config.budgets.events_file, clock) if events else None
        yield Engine(store, config, clock, events=book)
    finally:
        store.close()


def ensure_models(engine: Engine, *, refit: bool, quiet: bool) -> None:
    """Use the models the registry keeps, or fit them here; either way, say which."""
    registry = engine.config.models.registry_dir
    if engine.has_models and not refit:
        fitted_ns = engine.fitted.fitted_at_ns
        age_min = (SystemClock().time_ns() - fitted_ns) / 60e9
        typer.echo(
            f"Using the models kept in {registry}, fitted {iso(fitted_ns)} "
            f"({age_min:,.0f} min ago); --refit fits them anew.",
            err=True,
        )
        return
    why = (
        "as asked"
        if refit
        else "no registry is configured ([models] registry_dir)"
        if registry is None
        else f"none are kept in {registry} yet"
    )
    window_h = engine.config.models.window_s / 3600
    typer.echo(f"Fitting the models on the last {window_h:g} h of telemetry ({why}).", err=True)
    with Progress(transient=True, disable=quiet) as bar:
        task = bar.add_task("refit", total=1.0)
        engine.refit(lambda step, share: bar.update(task, completed=share, description=step))


def _fit_and_refresh(engine: Engine, *, refit: bool, quiet: bool) -> None:
    ensure_models(engine, refit=refit, quiet=quiet)
    engine.refresh()


def _one_shot(
    path: Path,
    store: str | None,
    clusters: str | None,
    zones: str | None,
    url: str | None = None,
) -> OptimizerConfig:
    return command_config(path, _overrides(store, clusters, zones, url))


def _overrides(
    store: str | None, clusters: str | None, zones: str | None, url: str | None
) -> dict[str, Any]:
    """The settings the common flags give (None: not given)."""
    return {
        "store.kind": store,
        "store.url": url,
        "shard.clusters": _split(clusters),
        "shard.zones": _split(zones),
    }


def serve(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = None,
) -> None:
    """Serve the HTTP API, refitting and refreshing on schedule."""
    from wattwise.optimizer.service.server import run_server

    flags = {"api.host": host, "api.port": port, "api.access_log": access_log}
    config = command_config(config_path, _overrides(store, clusters, zones, url) | flags)
    run_server(config)


def check_config(
    file: Annotated[
        Path | None,
        typer.Argument(help=f"the TOML file to check (default {DEFAULT_CONFIG_PATH})"),
    ] = None,
    config_path: Annotated[
        Path | None, typer.Option("--config", help="the same, as --config")
    ] = None,
) -> None:
    """Check a configuration file as serve would, without serving (FILE or --config FILE)."""
    from wattwise.optimizer.service.check_config import check_optimizer_config

    if file is not None and config_path is not None and file != config_path:
        raise ConfigError("--config", str(config_path), f"the same file as the argument {file}")
    path = file or config_path or DEFAULT_CONFIG_PATH
    config = load_optimizer_config(path, None, os.environ, require_file=True)
    summary, warnings = check_optimizer_config(config)
    typer.echo(f"{path}: OK ({summary})")
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def build_optimizer_app() -> typer.Typer:
    """``wattwise optimizer``: ``serve``, ``check-config`` and ``init-db``."""
    app = command_group(no_args_is_help=True, help="The optimizer service.")
    app.command()(serve)
    app.command("check-config")(check_config)
    app.command("init-db")(init_db_command)
    return app


def caps(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="every GPU, not only the limits to change")
    ] = False,
    refit: RefitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Power limits to change, largest saving first, and their total (--json: every GPU)."""
    with _engine(_one_shot(config_path, store, clusters, zones, url)) as engine:
        _fit_and_refresh(engine, refit=refit, quiet=as_json)
        rows = [rec.as_dict() for rec in engine.snapshot.caps]
    if as_json:
        _print_json(rows)
        return
    printing.print_caps(rows, show_all=show_all)
    if not show_all:
        typer.echo("(--all lists every GPU)")


def cooling(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    refit: RefitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Cooling setpoints per zone within inlet and GPU temperature limits."""
    with _engine(_one_shot(config_path, store, clusters, zones, url)) as engine:
        _fit_and_refresh(engine, refit=refit, quiet=as_json)
        rows = [rec.as_dict() for rec in engine.snapshot.cooling]
    if as_json:
        _print_json(rows)
    else:
        printing.print_cooling(rows)


def place(
    gpus: Annotated[int, typer.Option(help="GPUs the job needs on one host")],
    gpu_model: Annotated[str | None, typer.Option(help="part of the GPU name")] = None,
    zone: Annotated[str | None, typer.Option()] = None,
    rack: Annotated[str | None, typer.Option()] = None,
    exclude_host: Annotated[
        list[str] | None, typer.Option(metavar="HOST", help="repeat to exclude more")
    ] = None,
    expected_power_w: Annotated[float | None, typer.Option(help="power per GPU")] = None,
    duration_s: Annotated[float | None, typer.Option()] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    refit: RefitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The best node for a job and the sbatch --nodelist for it, then the alternatives;
    exits 1 saying why when no node can take it."""
    try:
        # FastAPI's models load only for the commands that need them, so the
        # agent's process (same console script) does not carry them.
        from wattwise.optimizer.service import placing
        from wattwise.optimizer.service.schemas import PlacementBody

        body = PlacementBody(
            gpus=gpus,
            gpu_model=gpu_model,
            zone=zone,
            rack=rack,
            exclude_hosts=tuple(exclude_host or ()),
            expected_power_w=expected_power_w,
            duration_s=duration_s,
        )
    except ValueError as e:
        raise ConfigError("--gpus/--expected-power-w/--duration-s", str(e), "valid values") from e
    with _engine(_one_shot(config_path, store, None, None, url)) as engine:
        _fit_and_refresh(engine, refit=refit, quiet=as_json)
        result = placing.place(engine, body)
    if as_json:
        _print_json(result)
        placed = bool(result["candidates"])
    else:
        placed = printing.print_placement(result, gpus)
    if not placed:
        raise typer.Exit(1)


def budget(
    scope: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SCOPE",
            help="site, zone:NAME or rack:NAME; repeat for more (default: every one)",
        ),
    ] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    refit: RefitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Power budgets in force ([budgets] limits and the service's power events): what each
    scope would draw at its peak before and after the planned caps, and what they cost."""
    with _engine(_one_shot(config_path, store, clusters, zones, url), events=True) as engine:
        _fit_and_refresh(engine, refit=refit, quiet=as_json)
        plans = engine.snapshot.budget
    wanted = set(scope or ())
    rows = [p.as_dict() for p in plans if not wanted or p.scope in wanted]
    if as_json:
        _print_json(rows)
        return
    printing.print_budget(rows, in_force=[p.scope for p in plans])


def build_recommend_app() -> typer.Typer:
    """``wattwise recommend``: ``caps``, ``cooling``, ``place`` and ``budget``."""
    app = command_group(no_args_is_help=True, help="Recommendations computed here and now.")
    app.command()(caps)
    app.command()(cooling)
    app.command()(place)
    app.command()(budget)
    return app


def models_command(
    ctx: typer.Context,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    refit: Annotated[
        bool, typer.Option("--refit/--no-refit", help="fit now (and keep) before listing")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the models the registry keeps with their accuracy; without a registry
    (``[models] registry_dir`` unset) or with ``--refit``, fit them on the configured window."""
    if ctx.invoked_subcommand is not None:
        return
    config = _one_shot(config_path, store, clusters, zones, url)
    if config.models.registry_dir is not None and not refit:
        infos = KeptModels(config.models.registry_dir, config.models.keep_versions).list()
    else:
        with _engine(config) as engine:
            ensure_models(engine, refit=True, quiet=as_json)
            infos = engine.stored_models()
    rows = [_model_row(info) for info in infos]
    if as_json:
        _print_json(rows)
    else:
        printing.print_models(rows)


MAX_WORKLOAD_ROWS = 20
"""Workloads shown per GPU model in the table; ``--json`` lists every one."""


def backtest_command(
    split: Annotated[
        str | None, typer.Option(help="fit before this time (ISO 8601 or Unix s), score after")
    ] = None,
    holdout: Annotated[
        str | None, typer.Option(help="score the last share of the data's span (default 20%)")
    ] = None,
    every: Annotated[
        int | None,
        typer.Option(min=1, max=3600, help="bucket in seconds (default: the models' every_s)"),
    ] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit the power models on the telemetry before a split and score them after it."""
    config = _one_shot(config_path, store, clusters, zones, url)
    try:
        result = run_backtest(config, SystemClock(), split=split, holdout=holdout, every_s=every)
    except SplitError as e:
        raise typer.BadParameter(str(e), param_hint=e.option) from e
    if as_json:
        _print_json(result)
        return
    typer.echo(f"fitted before {result['split']}, scored from it on, {result['every_s']} s buckets")
    models: list[dict[str, Any]] = result["models"]  # type: ignore[assignment]
    columns = ("kind", "gpu_model", "samples", "train_samples", "mape_pct", "mae_w")
    _print(models, columns)
    for row in models:
        baselines = ", ".join(
            f"{name} {printing.cell(errors.get('mape_pct'))}"
            for name, errors in row["baselines"].items()
        )
        said = [f"baselines' MAPE %: {baselines}"] if baselines else []
        said += [str(row["note"])] if row.get("note") else []
        if said:
            typer.echo(f"{row['gpu_model']}: {'; '.join(said)}")
    for row in models:
        workloads = row["workloads"][:MAX_WORKLOAD_ROWS]
        typer.echo(f"{row['gpu_model']}, per {row['workloads_by']}:")
        _print(workloads, ("workload", "samples", "measured_w", "predicted_w", "mape_pct"))
        if len(row["workloads"]) > len(workloads):
            typer.echo(f"… {len(row['workloads']) - len(workloads)} more (--json lists all)")


def build_models_app() -> typer.Typer:
    """``wattwise models``: list the models, or ``backtest`` them."""
    app = command_group(
        invoke_without_command=True,
        help="Each model and its accuracy; backtest on held-out data.",
    )
    app.callback()(models_command)
    app.command("backtest")(backtest_command)
    return app


def _model_row(info: ModelInfo) -> dict[str, object]:
    row = clean(asdict(info))
    assert isinstance(row, dict)
    errors: dict[str, float] = row["errors"]
    row["accuracy"] = ", ".join(f"{k} {v:.3g}" for k, v in errors.items()) or "-"
    row["window"] = f"{iso(info.window_start_ns)} .. {iso(info.window_end_ns)}"
    return row


def _print(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    Console().print(printing.table(rows, columns))


def _print_json(value: object) -> None:
    """JSON for scripts: a value unknown (NaN) as null."""
    typer.echo(json.dumps(clean(value), indent=2))
