"""init-db against a real influxd: policies, continuous queries, downsampled reads."""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest

from tests.influxd import InfluxServer
from tests.optimizer.store.fleet_data import (
    SECONDS,
    SPREAD_GPU,
    SPREAD_HOST,
    SPREAD_POWER_W,
    START_NS,
    fleet_readings,
)
from wattwise.clock import ManualClock
from wattwise.common.lineproto import encode_many
from wattwise.errors import ConfigError, StoreAuthError
from wattwise.optimizer.store import InfluxStore
from wattwise.optimizer.store.frames import GPU_SPEC
from wattwise.optimizer.store.initdb import backfill, downsample_selects, init_db
from wattwise.optimizer.telemetry import Scope

DAY_NS = 86_400 * 1_000_000_000
MINUTE_NS = 60 * 1_000_000_000


def _policies(server: InfluxServer, database: str) -> dict[str, tuple[str, bool]]:
    rows = server.rows(f'SHOW RETENTION POLICIES ON "{database}"', database)
    return {str(r["name"]): (str(r["duration"]), bool(r["default"])) for r in rows}


def _cq_names(server: InfluxServer, database: str) -> set[str]:
    body = server.query("SHOW CONTINUOUS QUERIES")
    return {
        row[0]
        for s in body["results"][0].get("series", [])
        if s["name"] == database
        for row in s.get("values", [])
    }


@pytest.fixture
def database() -> str:
    return f"initdb_{uuid.uuid4().hex[:8]}"


def test_init_db_creates_policies_and_a_query_per_measurement_and_is_idempotent(
    influxd: InfluxServer, database: str
) -> None:
    store = InfluxStore(influxd.url, database=database)
    init_db(store)
    init_db(store)  # a second run must not fail on what exists
    assert _policies(influxd, database) == {
        "autogen": ("0s", False),
        "raw": ("168h0m0s", True),
        "rp_1m": ("9600h0m0s", False),
    }
    assert _cq_names(influxd, database) == set(downsample_selects(database))
    assert {"cq_gpu_1m", "cq_host_1m", "cq_cooling_1m", "cq_gpu_capped_1m"} <= _cq_names(
        influxd, database
    )
    init_db(store, raw_retention="14d", downsampled_retention="52w")
    assert _policies(influxd, database)["raw"] == ("336h0m0s", True)
    assert _policies(influxd, database)["rp_1m"] == ("8736h0m0s", False)
    store.close()


def test_init_db_refuses_a_duration_influxdb_would_misread(
    influxd: InfluxServer, database: str
) -> None:
    store = InfluxStore(influxd.url, database=database)
    with pytest.raises(ConfigError, match="raw_retention"):
        init_db(store, raw_retention="7 days")
    store.close()


def test_init_db_without_credentials_on_an_auth_server_is_an_auth_error(
    influxd_auth: InfluxServer,
) -> None:
    store = InfluxStore(influxd_auth.url, database="wattwise")
    with pytest.raises(StoreAuthError):
        init_db(store)
    store.close()


def test_old_windows_are_read_from_the_downsampled_policy_with_the_same_answers(
    influxd: InfluxServer, database: str
) -> None:
    # raw keeps only 7 days, so write the fleet's three minutes as if they were recent; a
    # minute past a multiple of three, so that 3-minute buckets hold minutes 0-1 and 2
    start_ns = (time.time_ns() - DAY_NS) // (3 * MINUTE_NS) * (3 * MINUTE_NS) + MINUTE_NS
    shift_ns = start_ns - START_NS
    lines = encode_many(replace(r, time_ns=r.time_ns + shift_ns) for r in fleet_readings())
    end_ns = start_ns + SECONDS * 1_000_000_000
    writer = InfluxStore(influxd.url, database=database)
    init_db(writer)
    writer.write(lines)
    assert backfill(writer, start_ns, end_ns) > 0
    recent = InfluxStore(influxd.url, database=database, clock=ManualClock(start_ns=end_ns))
    later = InfluxStore(influxd.url, database=database, clock=ManualClock(end_ns + 8 * DAY_NS))
    assert not recent.reads_downsampled(start_ns)
    assert later.reads_downsampled(start_ns)

    raw = recent.gpu_series(start_ns, end_ns, every_s=60, scope=Scope())
    downsampled = later.gpu_series(start_ns, end_ns, every_s=60, scope=Scope())
    assert len(raw) == len(downsampled) == 8 * 3
    assert np.array_equal(raw.time_ns, downsampled.time_ns)
    for column in GPU_SPEC.columns:
        np.testing.assert_allclose(
            downsampled.values[column.name], raw.values[column.name], rtol=1e-9, err_msg=column.name
        )
    assert np.nanmax(downsampled.values["capped_share"]) > 0.3

    # Longer buckets: the spread is the mean of the minutes' spreads of their 1 s samples
    # (the minutes of one sample have none), not the spread of the bucket's samples.
    every_ns = 3 * MINUTE_NS
    longer = later.gpu_series(start_ns, end_ns, every_s=every_ns // 10**9, scope=Scope())
    spreads: dict[tuple[tuple[str, ...], int], list[float]] = {}
    for i in range(len(raw)):
        key = (tuple(str(raw.tags[t][i]) for t in GPU_SPEC.tags), int(raw.time_ns[i]))
        spread = float(raw.values["power_sd_w"][i])
        found = spreads.setdefault((key[0], key[1] // every_ns * every_ns), [])
        found.extend([] if np.isnan(spread) else [spread])
    assert len(longer) == len(spreads) == 8 * 2
    for i, time_ns in enumerate(longer.time_ns.tolist()):
        minutes = spreads[(tuple(str(longer.tags[t][i]) for t in GPU_SPEC.tags), time_ns)]
        expected = float(np.mean(minutes)) if minutes else np.nan
        got = longer.values["power_sd_w"][i]
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    planted = (longer.tags["host"] == SPREAD_HOST) & (longer.tags["gpu"] == str(SPREAD_GPU))
    equal_then_four, single = longer.values["power_sd_w"][planted]
    assert equal_then_four == pytest.approx((0.0 + statistics.stdev(SPREAD_POWER_W[1])) / 2)
    assert np.isnan(single)
    all_samples = recent.gpu_series(start_ns, end_ns, every_s=every_ns // 10**9, scope=Scope())
    mine = (all_samples.tags["host"] == SPREAD_HOST) & (all_samples.tags["gpu"] == str(SPREAD_GPU))
    assert all_samples.values["power_sd_w"][mine][0] == pytest.approx(
        statistics.stdev([*SPREAD_POWER_W[0], *SPREAD_POWER_W[1]])
    )  # 75 W for a minute, then ~300 W: the raw read's spread has the step in it
    for store in (writer, recent, later):
        store.close()
