"""Which telemetry store the optimizer reads, and :func:`open_store` to open it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.clock import Clock
from wattwise.common.secrets import read_secret
from wattwise.errors import ConfigError
from wattwise.optimizer.store.embedded import EmbeddedSqliteStore
from wattwise.optimizer.store.influx import DOWNSAMPLED_RP, InfluxStore
from wattwise.optimizer.store.prometheus import Place, PrometheusStore
from wattwise.optimizer.telemetry import TelemetryStore
from wattwise.settings import check_http_url


class HostPlace(BaseModel):
    """Where one host stands (``[store.hosts.<host>]``), for series that do not say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str = ""
    zone: str = ""
    rack: str = ""


class StoreSettings(BaseModel):
    """The optimizer's ``[store]`` settings. Secrets come from files, never from values here.

    InfluxDB 1.x: ``url``, ``database``, optionally ``rp``, ``username`` and
    ``password_file``. 2.x/3.x: ``url``, ``database`` (the DBRP mapping's or
    3.x database name), ``token_file`` and, for 2.x writes, ``org``.
    Prometheus-compatible (``kind = "prometheus"``, docs/prometheus.md): ``url`` of
    the query API's root, ``vocabulary``, optionally ``username``/``password_file``
    (basic auth) or ``token_file`` (bearer), ``tenant``, ``write_url`` and ``hosts``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["influx", "embedded", "prometheus"] = "influx"
    url: str = "http://127.0.0.1:8086"
    database: str = "wattwise"
    rp: str = ""
    downsampled_rp: str = DOWNSAMPLED_RP
    username: str = ""
    password_file: Path | None = None
    token_file: Path | None = None
    org: str = ""
    ca_file: Path | None = None
    verify_tls: bool = True
    embedded_path: Path = Path("/var/lib/wattwise/wattwise.sqlite")
    timeout_s: float = Field(10.0, gt=0, le=600, description="each network operation")
    query_deadline_s: float = Field(
        120.0, gt=0, le=3600, description="a whole query, however slowly the store answers"
    )
    vocabulary: Literal["wattwise", "dcgm"] = "wattwise"
    write_url: str = ""
    tenant: str = ""
    hosts: dict[str, HostPlace] = Field(default_factory=dict)
    sample_interval_s: float = Field(1.0, gt=0, le=3600)
    max_series_per_query: int = Field(2_000, ge=1, le=1_000_000)
    max_points_per_query: int = Field(500_000, ge=1_000, le=50_000_000)
    parallel_queries: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _check(self) -> StoreSettings:
        # ConfigError rather than ValueError, so the message names the exact key
        if self.kind in ("influx", "prometheus"):
            check_http_url("store.url", self.url, password_key="store.password_file")
        if self.password_file and self.token_file:
            raise ConfigError("store.token_file", str(self.token_file), "unset with password_file")
        if self.write_url:
            check_http_url("store.write_url", self.write_url, password_key="store.password_file")
        return self


def open_store(
    settings: StoreSettings, clock: Clock, *, must_exist: bool = False
) -> TelemetryStore:
    """The store ``settings`` describe, ready to read; the caller closes it.

    ``must_exist``: an embedded store that is not there is a configuration error, not
    a new empty file (commands that only read would print empty results from it).
    """
    if settings.kind == "embedded":
        path = settings.embedded_path
        if must_exist and not path.is_file():
            raise ConfigError(
                "store.embedded_path",
                str(path),
                "an embedded store that exists: the agent with store.kind = 'embedded' "
                "writes one, and `wattwise demo` writes demo-data/wattwise.sqlite "
                "(read it with --config demo-data/optimizer.toml)",
            )
        return EmbeddedSqliteStore(path)
    password = read_secret(None, settings.password_file, setting="store.password_file")
    token = read_secret(None, settings.token_file, setting="store.token_file")
    if settings.kind == "prometheus":
        return PrometheusStore(
            settings.url,
            vocabulary=settings.vocabulary,
            clock=clock,
            timeout_s=settings.timeout_s,
            deadline_s=settings.query_deadline_s,
            username=settings.username or None,
            password=password,
            token=token,
            tenant=settings.tenant or None,
            ca_file=settings.ca_file,
            verify=settings.verify_tls,
            write_url=settings.write_url or None,
            write_database=settings.database,
            hosts={h: Place(p.cluster, p.zone, p.rack) for h, p in settings.hosts.items()},
            sample_interval_s=settings.sample_interval_s,
            max_series_per_query=settings.max_series_per_query,
            max_points_per_query=settings.max_points_per_query,
            parallel_queries=settings.parallel_queries,
        )
    return InfluxStore(
        settings.url,
        database=settings.database,
        retention_policy=settings.rp or None,
        username=settings.username or None,
        password=password,
        token=token,
        org=settings.org or None,
        timeout_s=settings.timeout_s,
        deadline_s=settings.query_deadline_s,
        ca_file=settings.ca_file,
        verify=settings.verify_tls,
        clock=clock,
        downsampled_retention_policy=settings.downsampled_rp,
    )
