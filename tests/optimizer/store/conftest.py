from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.influxd import InfluxServer
from tests.optimizer.store.fleet_data import SECONDS, START_NS, fleet_lines, fleet_readings
from tests.prometheus_peers import (
    PrometheusServer,
    ReplayExporter,
    VictoriaMetricsServer,
    exposition,
)
from wattwise.clock import ManualClock
from wattwise.optimizer.store import EmbeddedSqliteStore, InfluxStore, PrometheusStore

END_NS = START_NS + SECONDS * 1_000_000_000


def _write_in_batches(store: InfluxStore | EmbeddedSqliteStore, lines: list[bytes]) -> None:
    for first in range(0, len(lines), 5000):
        store.write(lines[first : first + 5000])


@pytest.fixture(scope="module")
def influx_db(influxd: InfluxServer) -> str:
    """A database of this module's own on the session's influxd, filled with the fleet."""
    database = f"contract_{uuid.uuid4().hex[:8]}"
    influxd.create_database(database)
    return database


@pytest.fixture(scope="module")
def influx_store(influxd: InfluxServer, influx_db: str) -> Iterator[InfluxStore]:
    store = InfluxStore(influxd.url, database=influx_db, clock=ManualClock(start_ns=END_NS))
    _write_in_batches(store, fleet_lines())
    yield store
    store.close()


@pytest.fixture(scope="module")
def embedded_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedded") / "wattwise.sqlite"


@pytest.fixture(scope="module")
def embedded_store(embedded_path: Path) -> Iterator[EmbeddedSqliteStore]:
    store = EmbeddedSqliteStore(embedded_path)
    _write_in_batches(store, fleet_lines())
    yield store
    store.close()


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetricsServer]:
    """A real VictoriaMetrics of this module's own, fed the fleet's line protocol on /write."""
    server = VictoriaMetricsServer(tmp_path_factory.mktemp("victoria-metrics"))
    server.start()
    server.write(fleet_lines())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def victoria_store(victoria: VictoriaMetricsServer) -> Iterator[PrometheusStore]:
    store = PrometheusStore(
        victoria.url, clock=ManualClock(start_ns=END_NS), write_url=victoria.url
    )
    yield store
    store.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus of this module's own, which scrapes the fleet's three minutes,
    timestamps and all, from an exporter served here."""
    exporter = ReplayExporter(exposition(fleet_readings()))
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.address])
    server.start()
    try:
        server.wait_for("gpu_power_w", START_NS / 1e9 + SECONDS - 1, 8)
        yield server
    finally:
        server.stop()
        exporter.stop()


@pytest.fixture(scope="module")
def prometheus_store(prometheus: PrometheusServer) -> Iterator[PrometheusStore]:
    store = PrometheusStore(prometheus.url, clock=ManualClock(start_ns=END_NS))
    yield store
    store.close()
