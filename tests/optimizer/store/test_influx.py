"""What only the InfluxDB store does: aggregation in the database, credentials, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.influxd import InfluxServer, free_port
from tests.optimizer.store.conftest import END_NS
from tests.optimizer.store.fleet_data import START_NS
from wattwise.clock import ManualClock
from wattwise.common.secrets import Secret
from wattwise.errors import StoreAuthError, StoreQueryError, StoreUnavailable
from wattwise.optimizer.store import InfluxStore, StoreSettings, open_store
from wattwise.optimizer.store.influx import parse_duration_ns
from wattwise.optimizer.telemetry import Scope

MINUTE_NS = 60 * 1_000_000_000


def test_a_minute_of_samples_comes_back_as_one_row_per_gpu(
    influx_store: InfluxStore, influxd: InfluxServer, influx_db: str
) -> None:
    window = f"time >= {START_NS} AND time < {START_NS + MINUTE_NS}"
    raw_points = influxd.rows(f"SELECT power_w FROM gpu WHERE {window}", influx_db)
    assert len(raw_points) == 8 * 60
    series = influx_store.gpu_series(START_NS, START_NS + MINUTE_NS, every_s=60, scope=Scope())
    assert len(series) == 8  # grouped in influxd, not pulled raw


def test_a_missing_database_is_a_query_error(influxd: InfluxServer) -> None:
    store = InfluxStore(influxd.url, database="no_such_database")
    with pytest.raises(StoreQueryError, match="database not found"):
        store.gpu_series(START_NS, END_NS, every_s=60, scope=Scope())
    store.close()


def test_an_unreachable_server_is_unavailable() -> None:
    store = InfluxStore(f"http://127.0.0.1:{free_port()}", database="wattwise", timeout_s=2)
    with pytest.raises(StoreUnavailable):
        store.latest_gpus(Scope())
    store.close()


def test_basic_auth_reads_and_wrong_password_is_an_auth_error(influxd_auth: InfluxServer) -> None:
    user, password = influxd_auth.admin
    influxd_auth.create_database("wattwise")
    good = InfluxStore(
        influxd_auth.url, database="wattwise", username=user, password=Secret(password)
    )
    assert good.latest_gpus(Scope()) == []
    bad = InfluxStore(influxd_auth.url, database="wattwise", username=user, password=Secret("x"))
    with pytest.raises(StoreAuthError):
        bad.latest_gpus(Scope())
    with pytest.raises(StoreAuthError):
        bad.write([b"recommendation,kind=cooling recommended_setpoint_c=24.0 1"])
    good.close()
    bad.close()


def test_open_store_reads_the_password_from_its_file(
    influxd_auth: InfluxServer, tmp_path: Path
) -> None:
    user, password = influxd_auth.admin
    influxd_auth.create_database("wattwise")
    secret = tmp_path / "password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    settings = StoreSettings(url=influxd_auth.url, username=user, password_file=secret)
    store = open_store(settings, ManualClock())
    store.write([b"recommendation,kind=cooling,zone=z1 recommended_setpoint_c=24.0 1"])
    rows = influxd_auth.rows("SELECT * FROM recommendation", "wattwise")
    assert rows[0]["recommended_setpoint_c"] == 24.0
    store.close()


def test_influxdb_durations_parse_to_nanoseconds() -> None:
    assert parse_duration_ns("168h0m0s") == 7 * 86_400 * 10**9
    assert parse_duration_ns("1h30m5s") == 5405 * 10**9
    assert parse_duration_ns("0s") == 0


def query_answer(body: object) -> Answer:
    return Answer(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


RP_COLUMNS = ["name", "duration", "shardGroupDuration", "replicaN", "default"]


@pytest.mark.parametrize(
    ("answers", "read"),
    [
        # SHOW RETENTION POLICIES without the columns it always has: was a KeyError
        (
            [query_answer({"results": [{"series": [{"columns": ["x"], "values": [[1]]}]}]})],
            "series",
        ),
        ([query_answer([1, 2, 3])], "latest"),  # was an empty fleet, ready with 0 items
        ([query_answer([1, 2, 3])], "series"),
        ([query_answer({"results": "none"})], "latest"),
        ([query_answer({"results": [{"series": [{"columns": ["time"]}]}]})], "series"),
        (
            [
                query_answer({"results": [{"series": [{"columns": RP_COLUMNS, "values": []}]}]}),
                query_answer({"results": [{"series": [{"columns": ["time"], "values": [[1]]}]}]}),
            ],
            "series",
        ),
        (
            [
                query_answer(
                    {"results": [{"series": [{"columns": ["time", "a"], "values": [[1]]}]}]}
                )
            ],
            "latest",
        ),
    ],
)
def test_answer_that_is_not_a_query_result_is_the_store_refusing_the_query(
    answers: list[Answer], read: str
) -> None:
    with http_peer(answers) as peer:
        store = InfluxStore(peer.url, database="wattwise")
        with pytest.raises(StoreQueryError, match="not an InfluxDB query result"):
            if read == "latest":
                store.latest_gpus(Scope())
            else:
                store.gpu_series(START_NS, END_NS, every_s=60, scope=Scope())
        store.close()
