"""``wattwise optimizer serve|init-db``, ``wattwise recommend caps|cooling|place`` and
``wattwise models``: the service, and the same computations run once from the command line.

The one-shot commands read the same configuration as ``serve`` (file, environment,
flags), fit the models locally with a progress bar, and print a table or JSON.
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
from rich.table import Table

from wattwise.clock import SystemClock
from wattwise.errors import ConfigError
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.fitted import KeptModels
from wattwise.optimizer.service.settings import (
    DEFAULT_CONFIG_PATH,
    OptimizerConfig,
    load_optimizer_config,
)
from wattwise.optimizer.service.views import clean, iso
from wattwise.optimizer.store import open_store
from wattwise.optimizer.store.initdb import init_db_command

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


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [p.strip() for p in text.split(",") if p.strip()]


def _config(
    path: Path,
    store: str | None,
    clusters: str | None,
    zones: str | None,
    url: str | None = None,
    **extra: Any,
) -> OptimizerConfig:
    overrides = {
        "store.kind": store,
        "store.url": url,
        "shard.clusters": _split(clusters),
        "shard.zones": _split(zones),
        **extra,
    }
    return load_optimizer_config(path, overrides, os.environ)


@contextmanager
def _engine(config: OptimizerConfig) -> Iterator[Engine]:
    store = open_store(config.store, SystemClock())
    try:
        yield Engine(store, config, SystemClock())
    finally:
        store.close()


def _fit_and_refresh(engine: Engine, quiet: bool) -> None:
    with Progress(transient=True, disable=quiet) as bar:
        task = bar.add_task("refit", total=1.0)

        def progress(step: str, share: float) -> None:
            bar.update(task, completed=share, description=step)

        engine.refit(progress)
        bar.update(task, description="recommending")
        engine.refresh()


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
    config = _config(config_path, store, clusters, zones, url, **flags)
    run_server(config)


def build_optimizer_app() -> typer.Typer:
    """``wattwise optimizer``: ``serve`` and ``init-db``."""
    app = typer.Typer(no_args_is_help=True, help="The optimizer service.")
    app.command()(serve)
    app.command("init-db")(init_db_command)
    return app


def caps(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Power caps per GPU: recommended limit, saving and slowdown."""
    with _engine(_config(config_path, store, clusters, zones, url)) as engine:
        _fit_and_refresh(engine, as_json)
        rows = [rec.as_dict() for rec in engine.snapshot.caps]
    columns = ("host", "gpu", "current_limit_w", "recommended_limit_w", "saving_pct")
    _print(rows, (*columns, "slowdown_pct", "confidence", "reason"), as_json)


def cooling(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    clusters: ListOpt = None,
    zones: ListOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cooling setpoints per zone within inlet and GPU temperature limits."""
    with _engine(_config(config_path, store, clusters, zones, url)) as engine:
        _fit_and_refresh(engine, as_json)
        rows = [rec.as_dict() for rec in engine.snapshot.cooling]
    columns = ("cluster", "zone", "current_setpoint_c", "recommended_setpoint_c")
    _print(rows, (*columns, "predicted_max_inlet_c", "saving_w", "reason"), as_json)


def place(
    gpus: Annotated[int, typer.Option(help="GPUs the job needs on one host")],
    gpu_model: Annotated[str | None, typer.Option(help="part of the GPU name")] = None,
    zone: Annotated[str | None, typer.Option()] = None,
    rack: Annotated[str | None, typer.Option()] = None,
    exclude_host: Annotated[list[str] | None, typer.Option(help="repeat to exclude more")] = None,
    expected_power_w: Annotated[float | None, typer.Option(help="power per GPU")] = None,
    duration_s: Annotated[float | None, typer.Option()] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    store: StoreOpt = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where to place a job; ends with a --nodelist a Slurm user can pass to sbatch."""
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
    with _engine(_config(config_path, store, None, None, url)) as engine:
        _fit_and_refresh(engine, as_json)
        result = placing.place(engine, body)
    candidates: list[dict[str, object]] = result["candidates"]  # type: ignore[assignment]
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    columns = ("host", "gpus", "zone", "rack", "marginal_it_w", "marginal_cooling_w", "reason")
    _print(candidates, columns, False)
    typer.echo(f"--nodelist={result['nodelist']}")


def build_recommend_app() -> typer.Typer:
    """``wattwise recommend``: ``caps``, ``cooling`` and ``place``."""
    app = typer.Typer(no_args_is_help=True, help="Recommendations computed here and now.")
    app.command()(caps)
    app.command()(cooling)
    app.command()(place)
    return app


def models_command(
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
    config = _config(config_path, store, clusters, zones, url)
    if config.models.registry_dir is not None and not refit:
        infos = KeptModels(config.models.registry_dir, config.models.keep_versions).list()
    else:
        with _engine(config) as engine, Progress(transient=True, disable=as_json) as bar:
            task = bar.add_task("refit", total=1.0)
            engine.refit(lambda s, x: bar.update(task, completed=x, description=s))
            infos = engine.stored_models()
    rows = [_model_row(info) for info in infos]
    columns = ("kind", "scope", "version", "window", "samples", "accuracy", "notes")
    _print(rows, columns, as_json)


def _model_row(info: ModelInfo) -> dict[str, object]:
    row = clean(asdict(info))
    assert isinstance(row, dict)
    errors: dict[str, float] = row["errors"]
    row["accuracy"] = ", ".join(f"{k} {v:.3g}" for k, v in errors.items()) or "-"
    row["window"] = f"{iso(info.window_start_ns)} .. {iso(info.window_end_ns)}"
    return row


def _print(rows: list[dict[str, object]], columns: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(clean(rows), indent=2))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
