"""``wattwise optimizer init-db``: database, retention and 1-minute downsampling on 1.x.

What it sets up (idempotent: run it again to change a duration)::

    CREATE DATABASE "wattwise"
    retention policy "raw"   DURATION 7d   DEFAULT   the agent's raw samples
    retention policy "rp_1m" DURATION 400d           1-minute downsampled data
    continuous query "cq_<measurement>_1m" per measurement:
        SELECT mean(*)[, sum("<x>energy_j") AS "sum_<x>energy_j"]
               [, max("power_instant_w") AS "max_power_instant_w"]
               [, stddev("power_w") AS "stddev_power_w"]
        INTO "wattwise"."rp_1m"."<measurement>" FROM "wattwise"."raw"."<measurement>"
        GROUP BY time(1m), *
    continuous query "cq_gpu_capped_1m":
        SELECT mean("capped") / 4 AS "capped_share" INTO "wattwise"."rp_1m"."gpu"
        FROM (SELECT "clock_event_reasons" & 4 AS "capped" FROM "wattwise"."raw"."gpu"
              GROUP BY *)
        GROUP BY time(1m), *

so ``rp_1m`` holds ``mean_<field>`` for every numeric field, ``sum_energy_j``,
``max_power_instant_w``, ``stddev_power_w`` (the sample standard deviation of the minute's
``power_w`` samples; none in a minute of one sample) and ``capped_share``: what
:class:`~.influx.InfluxStore` reads for windows older than the raw retention.
:func:`backfill` runs the same queries once over a past range (continuous queries only
cover time from their creation on).
InfluxDB 2.x and 3.x have no continuous queries; ``docs/influxdb.md`` gives
their equivalents.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from wattwise.collector.schema import MEASUREMENTS
from wattwise.common.command_group import command_group
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError
from wattwise.optimizer.store.frames import CAPPED_BIT, CAPPED_SOURCE_FIELD, GPU_SPEC
from wattwise.optimizer.store.influx import DOWNSAMPLED_RP, InfluxStore
from wattwise.optimizer.store.influxql import ident, source

RAW_RP = "raw"
PEAK_FIELDS = frozenset(c.field for c in GPU_SPEC.columns if c.how == "max")
"""Fields whose highest value per minute is kept (``max_<field>``): the bursts of power."""
SPREAD_FIELDS = {
    GPU_SPEC.measurement: frozenset(c.field for c in GPU_SPEC.columns if c.how == "stddev")
}
"""Fields per measurement whose sample standard deviation per minute is kept
(``stddev_<field>``): how a GPU's power moves about the minute's mean."""
_DURATION = re.compile(r"^(INF|\d+[mhdw])$")


def downsample_selects(database: str, *, raw_rp: str = RAW_RP) -> dict[str, str]:
    """Continuous-query name → its ``SELECT … INTO … GROUP BY time(1m), *``."""
    selects = {}
    for measurement, spec in MEASUREMENTS.items():
        # increases since the previous sample (energy, XID events) add up; the rest average
        sums = [
            f"sum({ident(f)}) AS {ident('sum_' + f)}"
            for f, field_spec in spec.fields.items()
            if field_spec.counter
        ]
        sums += [f"max({ident(f)}) AS {ident('max_' + f)}" for f in spec.fields if f in PEAK_FIELDS]
        sums += [  # the sample standard deviation (n − 1); none in a minute of one sample
            f"stddev({ident(f)}) AS {ident('stddev_' + f)}"
            for f in spec.fields
            if f in SPREAD_FIELDS.get(measurement, ())
        ]
        into = source(database, DOWNSAMPLED_RP, measurement)
        selects[f"cq_{measurement}_1m"] = (
            f"SELECT {', '.join(['mean(*)', *sums])} INTO {into}"
            f" FROM {source(database, raw_rp, measurement)} GROUP BY time(1m), *"
        )
    inner = (
        f"SELECT {ident(CAPPED_SOURCE_FIELD)} & {CAPPED_BIT} AS {ident('capped')}"
        f" FROM {source(database, raw_rp, 'gpu')} GROUP BY *"  # else the tags do not reach INTO
    )
    selects["cq_gpu_capped_1m"] = (
        f"SELECT mean({ident('capped')}) / {CAPPED_BIT} AS {ident('capped_share')}"
        f" INTO {source(database, DOWNSAMPLED_RP, 'gpu')} FROM ({inner}) GROUP BY time(1m), *"
    )
    return selects


def _check_duration(key: str, value: str) -> None:
    if not _DURATION.match(value):
        raise ConfigError(key, value, "a duration such as 7d, 400d, 52w, 12h or INF")


def init_db(
    store: InfluxStore,
    *,
    raw_retention: str = "7d",
    downsampled_retention: str = "400d",
) -> list[str]:
    """Create or update the database, policies and continuous queries; return the statements."""
    _check_duration("raw_retention", raw_retention)
    _check_duration("downsampled_retention", downsampled_retention)
    db = ident(store.database)
    statements = [f"CREATE DATABASE {db}"]
    store.execute(statements[0])
    existing = _names(store.execute(f"SHOW RETENTION POLICIES ON {db}"))
    for rp, duration, default in (
        (RAW_RP, raw_retention, " DEFAULT"),
        (DOWNSAMPLED_RP, downsampled_retention, ""),
    ):
        verb = "ALTER" if rp in existing else "CREATE"
        # ALTER on an existing policy so a second run can change its duration
        statements.append(
            f"{verb} RETENTION POLICY {ident(rp)} ON {db} DURATION {duration}"
            f" REPLICATION 1{default}"
        )
    existing_cqs = _names(store.execute("SHOW CONTINUOUS QUERIES"), series_name=store.database)
    for name, select in downsample_selects(store.database).items():
        if name in existing_cqs:  # a CQ cannot be altered: replace it
            statements.append(f"DROP CONTINUOUS QUERY {ident(name)} ON {db}")
        statements.append(f"CREATE CONTINUOUS QUERY {ident(name)} ON {db} BEGIN {select} END")
    for statement in statements[1:]:
        store.execute(statement)
    return statements


def backfill(store: InfluxStore, start_ns: int, end_ns: int) -> int:
    """Downsample ``[start_ns, end_ns)`` of the raw data now; the number of points written."""
    written = 0
    for select in downsample_selects(store.database).values():
        head, group = select.rsplit(" GROUP BY ", 1)
        window = f"time >= {int(start_ns)} AND time < {int(end_ns)}"
        for result in store.execute(f"{head} WHERE {window} GROUP BY {group}"):
            for series in result.get("series") or []:
                written += sum(int(row[1]) for row in series.get("values") or [])
    return written


def _names(results: list[dict[str, Any]], series_name: str | None = None) -> set[str]:
    """The ``name`` column of SHOW results (of one series, for SHOW CONTINUOUS QUERIES)."""
    names: set[str] = set()
    for result in results:
        for series in result.get("series") or []:
            if series_name is not None and series.get("name") != series_name:
                continue
            column = series["columns"].index("name")
            names.update(str(row[column]) for row in series.get("values") or [])
    return names


def init_db_command(
    url: Annotated[str, typer.Option(help="InfluxDB 1.x URL")] = "http://127.0.0.1:8086",
    database: Annotated[str, typer.Option(help="database to create")] = "wattwise",
    username: Annotated[str, typer.Option(help="an admin user, if auth is enabled")] = "",
    password_file: Annotated[
        Path | None, typer.Option(help="file holding that user's password (chmod 600)")
    ] = None,
    raw_retention: Annotated[str, typer.Option(help="how long raw samples stay")] = "7d",
    downsampled_retention: Annotated[
        str, typer.Option(help="how long 1-minute means stay")
    ] = "400d",
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for https")] = None,
    timeout_s: Annotated[float, typer.Option(help="per-request timeout")] = 10.0,
) -> None:
    """Create the database, its raw and 1-minute retention policies and the downsampling."""
    password = read_secret(None, password_file, setting="password_file")
    store = InfluxStore(
        url,
        database=database,
        username=username or None,
        password=password,
        ca_file=ca_file,
        timeout_s=timeout_s,
    )
    try:
        for statement in init_db(
            store, raw_retention=raw_retention, downsampled_retention=downsampled_retention
        ):
            typer.echo(statement)
    finally:
        store.close()


def build_optimizer_store_app() -> typer.Typer:
    """The ``init-db`` command, for the lead to add under ``wattwise optimizer``."""
    app = command_group(no_args_is_help=True)
    app.command("init-db")(init_db_command)
    return app
