"""The contract every telemetry store meets, on the same simulated-fleet data.

Each test runs against the InfluxDB store (a real influxd), the embedded store (a
real SQLite file), and the Prometheus store on a real Prometheus (which scraped the
readings) and a real VictoriaMetrics (which took the agent's line protocol), and
compares the answer with what :mod:`tests.optimizer.store.fleet_data` computes
from the written readings.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.influxd import InfluxServer
from tests.optimizer.store.conftest import END_NS
from tests.optimizer.store.fleet_data import (
    CAPPED_GPU,
    CAPPED_HOST,
    GAP_GPU,
    GAP_HOST,
    GPM_SHARES,
    NO_GPM_HOST,
    SPREAD_GPU,
    SPREAD_HOST,
    SPREAD_POWER_W,
    START_NS,
    fleet_readings,
    reference_latest,
    reference_series,
)
from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import encode
from wattwise.errors import ConfigError
from wattwise.optimizer.store import EmbeddedSqliteStore, InfluxStore, PrometheusStore
from wattwise.optimizer.store.frames import (
    GPU_SPEC,
    GPU_STATE_FIELDS,
    HOST_SPEC,
    HOST_STATE_FIELDS,
    JOB_SPEC,
    XID_SPEC,
    ZONE_SPEC,
    ZONE_STATE_FIELDS,
    SeriesSpec,
)
from wattwise.optimizer.telemetry import (
    GpuState,
    HostState,
    Scope,
    Series,
    TelemetryStore,
    ZoneState,
)

MINUTE_NS = 60 * 1_000_000_000
Frame = dict[tuple[tuple[str, ...], int], dict[str, float]]
ALL = Scope()


@dataclass
class Contracted:
    store: TelemetryStore
    read_back: Callable[[str], list[dict[str, object]]]  # measurement → rows (tags + fields)
    keeps_writes: bool = True


STORES = ["influx", "embedded", "prometheus", "victoria"]


@pytest.fixture(scope="module", params=STORES)
def subject(request: pytest.FixtureRequest) -> Contracted:
    if request.param == "prometheus":
        # Prometheus has no write API: the store says so and keeps nothing
        return Contracted(request.getfixturevalue("prometheus_store"), lambda m: [], False)
    if request.param == "victoria":
        victoria: VictoriaMetricsServer = request.getfixturevalue("victoria")
        victoria_store: PrometheusStore = request.getfixturevalue("victoria_store")
        return Contracted(victoria_store, lambda m: _victoria_rows(victoria, m))
    if request.param == "influx":
        server: InfluxServer = request.getfixturevalue("influxd")
        database: str = request.getfixturevalue("influx_db")
        store: InfluxStore = request.getfixturevalue("influx_store")
        return Contracted(store, lambda m: server.rows(f'SELECT * FROM "{m}"', database))
    embedded: EmbeddedSqliteStore = request.getfixturevalue("embedded_store")

    def read_back(measurement: str) -> list[dict[str, object]]:
        reader = EmbeddedStore(embedded.path)
        try:
            return [{**p.tags, **p.fields} for p in reader.latest(measurement)]
        finally:
            reader.close()

    return Contracted(embedded, read_back)


def _victoria_rows(server: VictoriaMetricsServer, measurement: str) -> list[dict[str, object]]:
    """One row per series of ``measurement``: its labels and each field's newest value."""
    server.flush()  # searchable now, not within the second VictoriaMetrics takes
    rows: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
    for found in server.query(f'{{__name__=~"{measurement}_.+"}}', END_NS / 1e9):
        labels = dict(found["metric"])
        field = labels.pop("__name__").removeprefix(f"{measurement}_")
        row = rows.setdefault(tuple(sorted(labels.items())), dict(labels))
        row[field] = float(found["value"][1])
    return list(rows.values())


def _as_dict(spec: SeriesSpec, series: Series) -> Frame:
    out = {}
    for i in range(len(series)):
        key = (tuple(str(series.tags[t][i]) for t in spec.tags), int(series.time_ns[i]))
        out[key] = {c.name: float(series.values[c.name][i]) for c in spec.columns}
    return out


def _assert_same(actual: Frame, expected: Frame) -> None:
    assert sorted(actual) == sorted(expected)  # same series, same buckets
    for key, columns in expected.items():
        for name, value in columns.items():
            got = actual[key][name]
            if math.isnan(value):
                assert math.isnan(got), (key, name, got)
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (key, name)


READERS = [
    (GPU_SPEC, "gpu_series"),
    (HOST_SPEC, "host_series"),
    (ZONE_SPEC, "zone_series"),
    (JOB_SPEC, "job_series"),
    (XID_SPEC, "xid_series"),
]


@pytest.mark.parametrize(("spec", "method"), READERS, ids=[m for _, m in READERS])
@pytest.mark.parametrize("every_s", [60, 25])
def test_series_equal_the_aggregates_of_the_written_readings(
    subject: Contracted, spec: SeriesSpec, method: str, every_s: int
) -> None:
    series = getattr(subject.store, method)(START_NS, END_NS, every_s=every_s, scope=ALL)
    expected = reference_series(spec, START_NS, END_NS, every_s, ALL)
    assert expected  # the fleet wrote this measurement
    _assert_same(_as_dict(spec, series), expected)
    assert list(series.tags) == list(spec.tags)
    assert list(series.values) == [c.name for c in spec.columns]


def test_series_are_ordered_by_tags_then_time(subject: Contracted) -> None:
    series = subject.store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
    keys = [
        (tuple(series.tags[t][i] for t in GPU_SPEC.tags), series.time_ns[i])
        for i in range(len(series))
    ]
    assert keys == sorted(keys)
    assert len(series) == 8 * 3  # 8 GPUs × 3 whole minutes


@pytest.mark.parametrize(
    "scope",
    [
        Scope(hosts=("sim-r01-n02", "sim-r02-n01")),
        Scope(zones=("z2",)),
        Scope(clusters=("sim",), zones=("z1",), hosts=("sim-r01-n01",)),
        Scope(clusters=("elsewhere",)),
    ],
    ids=["hosts", "zone", "all-three", "no-match"],
)
def test_scope_keeps_only_the_asked_part_of_the_fleet(subject: Contracted, scope: Scope) -> None:
    for spec, method in READERS:
        series = getattr(subject.store, method)(START_NS, END_NS, every_s=60, scope=scope)
        _assert_same(_as_dict(spec, series), reference_series(spec, START_NS, END_NS, 60, scope))
    hosts = set(subject.store.gpu_series(START_NS, END_NS, every_s=60, scope=scope).tags["host"])
    assert hosts <= set(scope.hosts or hosts)


def test_a_missing_value_is_nan_not_zero(subject: Contracted) -> None:
    gap = Scope(hosts=(GAP_HOST,))
    series = subject.store.gpu_series(START_NS, START_NS + 2 * MINUTE_NS, every_s=60, scope=gap)
    first_minute = (series.tags["gpu"] == str(GAP_GPU)) & (series.time_ns == START_NS)
    assert np.isnan(series.values["temp_c"][first_minute]).all()
    assert first_minute.sum() == 1
    assert not np.isnan(series.values["power_w"][first_minute]).any()
    second_minute = (series.tags["gpu"] == str(GAP_GPU)) & (series.time_ns == START_NS + MINUTE_NS)
    assert (series.values["temp_c"][second_minute] > 20).all()


def test_gpm_columns_are_the_means_of_the_activity_and_nan_where_unmeasured(
    subject: Contracted,
) -> None:
    series = subject.store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
    unmeasured = series.tags["host"] == NO_GPM_HOST
    assert unmeasured.any() and (~unmeasured).any()
    for name, share in GPM_SHARES.items():
        column = series.values[name]
        assert np.isnan(column[unmeasured]).all(), name
        # planted as a share of each sample's utilization: so are the means
        expected = share * series.values["util_gpu_pct"][~unmeasured]
        np.testing.assert_allclose(column[~unmeasured], expected, rtol=1e-3, atol=1e-2)
    assert np.nanmax(series.values["sm_active_pct"]) > 50  # the data has busy GPUs


def _capped_by_hand() -> dict[int, float]:
    """Share of samples with bit 0x4 per minute of the capped GPU, counted directly."""
    counts: dict[int, list[int]] = {}
    for r in fleet_readings():
        if r.measurement == "gpu" and (r.tags["host"], r.tags["gpu"]) == (
            CAPPED_HOST,
            str(CAPPED_GPU),
        ):
            minute = (r.time_ns - START_NS) // MINUTE_NS
            reasons = r.fields["clock_event_reasons"]
            assert isinstance(reasons, int)
            counts.setdefault(minute, []).append(1 if reasons & 0x4 else 0)
    return {minute: sum(bits) / len(bits) for minute, bits in counts.items()}


def test_capped_share_is_the_share_of_samples_with_the_power_cap_bit(subject: Contracted) -> None:
    series = subject.store.gpu_series(
        START_NS, END_NS, every_s=60, scope=Scope(hosts=(CAPPED_HOST,))
    )
    mine = series.tags["gpu"] == str(CAPPED_GPU)
    shares = dict(
        zip(
            ((series.time_ns[mine] - START_NS) // MINUTE_NS).tolist(),
            series.values["capped_share"][mine],
            strict=True,
        )
    )
    expected = _capped_by_hand()
    assert 0.3 < expected[0] < 0.7  # capped from second 30: the data exercises the bit
    assert shares == pytest.approx(expected, abs=1e-12)
    others = series.values["capped_share"][~mine]
    assert np.all(others < shares[0])


def test_energy_sums_equal_the_written_energy(subject: Contracted) -> None:
    series = subject.store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
    written = 0.0
    for r in fleet_readings():
        energy_j = r.fields.get("energy_j") if r.measurement == "gpu" else None
        if isinstance(energy_j, float):
            written += energy_j
    assert float(np.nansum(series.values["energy_j"])) == pytest.approx(written, rel=1e-12)
    assert written > 8 * 180 * 50  # at least idle power on every GPU


def test_power_spread_is_the_sample_standard_deviation_and_missing_for_one_sample(
    subject: Contracted,
) -> None:
    series = subject.store.gpu_series(
        START_NS, END_NS, every_s=60, scope=Scope(hosts=(SPREAD_HOST,))
    )
    mine = series.tags["gpu"] == str(SPREAD_GPU)
    minutes = ((series.time_ns[mine] - START_NS) // MINUTE_NS).tolist()
    spread = dict(zip(minutes, series.values["power_sd_w"][mine].tolist(), strict=True))
    mean = dict(zip(minutes, series.values["power_w"][mine].tolist(), strict=True))
    assert sorted(spread) == [0, 1, 2]
    assert spread[0] == 0.0  # sixty equal samples: exactly none, whatever the rounding
    # n − 1, as InfluxQL's STDDEV(): 12.91 W, where n would give 11.18 W
    assert spread[1] == pytest.approx(statistics.stdev(SPREAD_POWER_W[1]), rel=1e-12)
    assert spread[1] == pytest.approx(12.909944487358056, rel=1e-12)
    assert math.isnan(spread[2])  # one sample has no spread: missing, not 0
    assert mean == pytest.approx({m: statistics.fmean(v) for m, v in SPREAD_POWER_W.items()})
    others = series.values["power_sd_w"][~mine]
    assert np.all((others > 0.0) & (others < 700.0))  # the simulated GPUs' own spread


def test_an_empty_window_gives_empty_columns(subject: Contracted) -> None:
    before = START_NS - 10 * MINUTE_NS
    for spec, method in READERS:
        series = getattr(subject.store, method)(before, START_NS, every_s=60, scope=ALL)
        assert len(series) == 0
        assert list(series.tags) == list(spec.tags)
        assert all(len(v) == 0 for v in [*series.tags.values(), *series.values.values()])
        assert list(series.values) == [c.name for c in spec.columns]


def _check_state(
    state: GpuState | HostState | ZoneState, reading: Reading, names: tuple[str, ...]
) -> None:
    assert state.time_ns == reading.time_ns
    for name in names:
        expected = reading.fields.get(name)
        got = getattr(state, name)
        if name == "failed":
            assert got is (expected == 1)
        elif expected is None:
            assert math.isnan(got)
        else:
            assert got == pytest.approx(float(expected), rel=1e-12), name


@pytest.mark.parametrize("scope", [ALL, Scope(zones=("z1",)), Scope(hosts=(GAP_HOST,))])
def test_latest_states_are_the_newest_samples(subject: Contracted, scope: Scope) -> None:
    gpus = subject.store.latest_gpus(scope)
    newest = reference_latest(GPU_SPEC, scope, ("host", "gpu"))
    assert sorted((s.host, str(s.gpu)) for s in gpus) == sorted(newest)
    for state in gpus:
        reading = newest[(state.host, str(state.gpu))]
        assert (state.uuid, state.model, state.zone, state.rack) == tuple(
            reading.tags[t] for t in ("uuid", "model", "zone", "rack")
        )
        _check_state(state, reading, GPU_STATE_FIELDS)
    hosts = subject.store.latest_hosts(scope)
    newest_hosts = reference_latest(HOST_SPEC, scope, ("host",))
    assert sorted(s.host for s in hosts) == sorted(k[0] for k in newest_hosts)
    for host in hosts:
        _check_state(host, newest_hosts[(host.host,)], HOST_STATE_FIELDS)
    zones = subject.store.latest_zones(scope)
    newest_zones = reference_latest(ZONE_SPEC, scope, ("zone",))
    assert sorted(z.zone for z in zones) == sorted(k[0] for k in newest_zones)
    for zone in zones:
        _check_state(zone, newest_zones[(zone.zone,)], ZONE_STATE_FIELDS)


def test_latest_of_an_unknown_part_of_the_fleet_is_empty(subject: Contracted) -> None:
    nowhere = Scope(clusters=("elsewhere",))
    assert subject.store.latest_gpus(nowhere) == []
    assert subject.store.latest_hosts(nowhere) == []
    assert subject.store.latest_zones(nowhere) == []


def test_written_recommendations_read_back(
    subject: Contracted, caplog: pytest.LogCaptureFixture
) -> None:
    tags = {"kind": "power_cap", "cluster": "sim", "zone": "z1", "host": CAPPED_HOST, "gpu": "1"}
    fields = {"current_limit_w": 700.0, "recommended_limit_w": 450.0, "samples": 180}
    line = encode(Reading("recommendation", tags, fields, END_NS))
    assert line is not None
    with caplog.at_level(logging.WARNING):
        subject.store.write([line])
    rows = subject.read_back("recommendation")
    if not subject.keeps_writes:
        assert rows == []
        assert "takes no line protocol" in caplog.text
        return
    assert len(rows) == 1
    assert {k: rows[0][k] for k in (*tags, *fields)} == {**tags, **fields}


def _same_states(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name, value in vars(x).items():
            other = getattr(y, name)
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=1e-12, nan_ok=True), name
            else:
                assert other == value, name


@pytest.mark.parametrize("other", ["embedded_store", "prometheus_store", "victoria_store"])
def test_every_store_gives_the_answers_influxdb_gives(
    influx_store: InfluxStore, other: str, request: pytest.FixtureRequest
) -> None:
    store: TelemetryStore = request.getfixturevalue(other)
    for spec, method in READERS:
        a = getattr(influx_store, method)(START_NS, END_NS, every_s=60, scope=ALL)
        b = getattr(store, method)(START_NS, END_NS, every_s=60, scope=ALL)
        assert np.array_equal(a.time_ns, b.time_ns)
        for tag in spec.tags:
            assert list(a.tags[tag]) == list(b.tags[tag])
        for column in spec.columns:
            np.testing.assert_allclose(a.values[column.name], b.values[column.name], rtol=1e-9)
    _same_states(influx_store.latest_gpus(ALL), store.latest_gpus(ALL))
    _same_states(influx_store.latest_hosts(ALL), store.latest_hosts(ALL))
    _same_states(influx_store.latest_zones(ALL), store.latest_zones(ALL))


def test_a_bucket_shorter_than_a_second_is_refused_naming_the_setting(
    subject: Contracted,
) -> None:
    with pytest.raises(ConfigError) as info:
        subject.store.host_series(0, END_NS, every_s=0, scope=Scope())
    assert info.value.key == "every_s"
