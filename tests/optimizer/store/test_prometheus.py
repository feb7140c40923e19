"""What the Prometheus store does beyond the contract: splitting reads, windows that cut
buckets short, the host map, errors and writes, against a real VictoriaMetrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.influxd import free_port
from tests.optimizer.store.conftest import END_NS
from tests.optimizer.store.fleet_data import START_NS, fleet_readings, reference_series
from tests.optimizer.store.test_contract import _as_dict, _assert_same
from tests.prometheus_peers import PrometheusServer, VictoriaMetricsServer
from wattwise.agent.config import AgentConfig
from wattwise.agent.runtime import AgentRuntime
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.common.lineproto import encode_many
from wattwise.common.secrets import Secret
from wattwise.errors import ConfigError, StoreAuthError, StoreQueryError, StoreUnavailable
from wattwise.optimizer.store import EmbeddedSqliteStore, PrometheusStore
from wattwise.optimizer.store.frames import GPU_SPEC, HOST_SPEC
from wattwise.optimizer.store.prom_answers import raise_for_status, series_of
from wattwise.optimizer.store.prometheus import MAX_HOST_CHARS, Place
from wattwise.optimizer.store.settings import StoreSettings, open_store
from wattwise.optimizer.telemetry import Floats, Scope, Series

ALL = Scope()


def _query_ranges(server: VictoriaMetricsServer) -> float:
    """How many query_range requests the server has answered (its own /metrics, which it
    refreshes once a second)."""
    time.sleep(1.1)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vm_http_requests_total") and 'path="/api/v1/query_range"' in line
    )


def test_reads_split_by_hosts_and_time_give_the_unsplit_answer(
    victoria: VictoriaMetricsServer, victoria_store: PrometheusStore
) -> None:
    small = PrometheusStore(
        victoria.url,
        clock=ManualClock(start_ns=END_NS),
        max_series_per_query=3,  # 8 GPUs: three groups of hosts and one for the unseen
        max_points_per_query=4,  # ≤ 2 buckets per query for a group of 2 GPUs
    )
    try:
        before = _query_ranges(victoria)
        split = small.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
        split_queries = _query_ranges(victoria) - before
        before = _query_ranges(victoria)
        whole = victoria_store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
        whole_queries = _query_ranges(victoria) - before
    finally:
        small.close()
    _assert_same(_as_dict(GPU_SPEC, split), _as_dict(GPU_SPEC, whole))
    _assert_same(_as_dict(GPU_SPEC, split), reference_series(GPU_SPEC, START_NS, END_NS, 60, ALL))
    assert whole_queries == len(GPU_SPEC.columns)  # one query per column when it fits
    assert split_queries >= 4 * 2 * len(GPU_SPEC.columns)


@pytest.mark.parametrize(
    ("start_ns", "end_ns"),
    [
        (START_NS + 17_250_000_000, END_NS),  # starts mid-bucket
        (START_NS, END_NS - 41_500_000_000),  # ends mid-bucket
        (START_NS + 70_000_000_000, START_NS + 100_000_000_000),  # inside one bucket
    ],
    ids=["start", "end", "inside"],
)
def test_buckets_cut_short_by_the_window_hold_only_its_samples(
    victoria_store: PrometheusStore, start_ns: int, end_ns: int
) -> None:
    for spec, method in ((GPU_SPEC, "gpu_series"), (HOST_SPEC, "host_series")):
        series = getattr(victoria_store, method)(start_ns, end_ns, every_s=60, scope=ALL)
        _assert_same(_as_dict(spec, series), reference_series(spec, start_ns, end_ns, 60, ALL))


def test_a_host_map_places_hosts_whose_series_do_not_say(tmp_path: Path) -> None:
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        bare = [
            Reading("gpu", {"host": r.tags["host"], "gpu": r.tags["gpu"]}, r.fields, r.time_ns)
            for r in fleet_readings()
            if r.measurement == "gpu"
        ]
        server.write(encode_many(bare))
        places = {"sim-r01-n01": Place("c1", "hall-a", "r9"), "sim-r02-n01": Place("c1", "hall-b")}
        store = PrometheusStore(server.url, clock=ManualClock(start_ns=END_NS), hosts=places)
        try:
            hall_a = store.gpu_series(START_NS, END_NS, every_s=60, scope=Scope(zones=("hall-a",)))
            everything = store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
            latest = store.latest_gpus(Scope(clusters=("c1",)))
        finally:
            store.close()
    finally:
        server.stop()
    assert set(hall_a.tags["host"]) == {"sim-r01-n01"}
    assert set(hall_a.tags["rack"]) == {"r9"}
    unplaced = everything.tags["host"] == "sim-r01-n02"
    assert set(everything.tags["zone"][unplaced]) == {""}  # no label, not in the map
    assert sorted({(s.host, s.zone) for s in latest}) == [
        ("sim-r01-n01", "hall-a"),
        ("sim-r02-n01", "hall-b"),
    ]


def test_a_store_that_cannot_be_reached_is_unavailable() -> None:
    store = PrometheusStore(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(StoreUnavailable):
            store.gpu_series(START_NS, END_NS, every_s=60, scope=ALL)
    finally:
        store.close()


def test_wrong_credentials_are_an_auth_error_and_right_ones_read(tmp_path: Path) -> None:
    class GuardedVictoria(VictoriaMetricsServer):
        def _command(self) -> list[str]:
            return [*super()._command(), "-httpAuth.username=ops", "-httpAuth.password=s3cret"]

        def _ready(self) -> bool:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code in (200, 401)

    server = GuardedVictoria(tmp_path)
    server.start()
    try:
        wrong = PrometheusStore(server.url, username="ops", password=Secret("nope"))
        right = PrometheusStore(server.url, username="ops", password=Secret("s3cret"))
        try:
            with pytest.raises(StoreAuthError, match="401"):
                wrong.latest_gpus(ALL)
            assert right.latest_gpus(ALL) == []  # answered: an empty store
        finally:
            wrong.close()
            right.close()
    finally:
        server.stop()


def test_a_query_the_server_refuses_is_a_query_error(victoria: VictoriaMetricsServer) -> None:
    response = httpx.post(f"{victoria.url}/api/v1/query", data={"query": "sum(("}, timeout=10)
    assert response.status_code in (400, 422)
    with pytest.raises(StoreQueryError, match="HTTP"):
        raise_for_status(response, victoria.url)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"status":"error","errorType":"bad_data","error":"parse error"}',
        '{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":'
        '[[1,"abc"]]}]}}',
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":'
        '[[1,"2"],[3',
    ],
    ids=["not-json", "error", "scalar", "bad-number", "cut-short"],
)
def test_an_answer_that_is_not_series_is_a_query_error_never_numbers(text: str) -> None:
    with pytest.raises(StoreQueryError):
        series_of(text, "http://store")


def test_special_values_and_empty_answers_read_as_such() -> None:
    text = (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"host":"a"},"values":[[10,"NaN"],[20,"+Inf"],[30,"1.5e-3"]]},'
        '{"metric":{"host":"b"},"values":[[10,"7"]]}]},"warnings":["x]]"]}'
    )
    first, second = series_of(text, "u")
    assert first.labels == {"host": "a"} and list(first.time_s) == [10, 20, 30]
    assert str(first.values.tolist()) == "[nan, inf, 0.0015]"
    assert second.values.tolist() == [7.0]
    empty = '{"status":"success","data":{"resultType":"vector","result":[]}}'
    assert series_of(empty, "u") == []


def test_without_a_write_url_writes_are_said_once_and_kept_nowhere(
    victoria: VictoriaMetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = PrometheusStore(victoria.url)
    try:
        with caplog.at_level(logging.WARNING):
            store.write([b"recommendation,kind=cooling saving_w=1.0 1"])
            store.write([b"recommendation,kind=cooling saving_w=2.0 2"])
    finally:
        store.close()
    assert sum("takes no line protocol" in m for m in caplog.messages) == 1


def test_settings_open_a_prometheus_store_and_refuse_what_is_wrong() -> None:
    store = open_store(
        StoreSettings(kind="prometheus", url="http://127.0.0.1:9090", vocabulary="dcgm"),
        ManualClock(),
    )
    try:
        assert isinstance(store, PrometheusStore)
        assert repr(store) == "PrometheusStore('http://127.0.0.1:9090', vocabulary='dcgm')"
    finally:
        store.close()
    with pytest.raises(ConfigError) as info:
        StoreSettings(kind="prometheus", url="victoria:8428")
    assert info.value.key == "store.url"
    with pytest.raises(ConfigError) as info:
        StoreSettings(kind="prometheus", url="http://vm:8428", write_url="vm:8428/write")
    assert info.value.key == "store.write_url"


def test_a_prometheus_scraping_the_agents_export_is_read_like_its_line_protocol(
    tmp_path: Path,
) -> None:
    """The agent → its /metrics → Prometheus → this store; the same agent's line protocol →
    the embedded store: power means agree, and energy read from the export's counter
    (``increase``) agrees with the sums of its increases, as closely as Prometheus'
    extrapolation lets it."""
    port = free_port()
    config = AgentConfig.model_validate(
        {
            "agent": {
                "host": "n1",
                "source": "sim",
                "energy_every_s": 1.0,
                "sim": {"nodes": 2, "gpus_per_node": 2},
            },
            "store": {"kind": "embedded", "embedded_path": str(tmp_path / "agent.sqlite")},
            "wal": {"dir": str(tmp_path / "wal")},
            "metrics": {"prometheus_port": port, "export_readings": True},
        }
    )
    runtime = AgentRuntime.from_config(config, environ={})
    stop = threading.Event()
    agent = threading.Thread(target=runtime.run, args=(stop,))
    (tmp_path / "prometheus").mkdir()
    server = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    agent.start()
    server.start()
    try:
        server.wait_for("gpu_energy_joules_total", None, 4)
        time.sleep(16)  # sixteen scrapes
        # buckets that ended a few seconds ago: their last scrape is in, however busy the box
        end_ns = (time.time_ns() - 3_000_000_000) // 5_000_000_000 * 5_000_000_000
        start_ns = end_ns - 10_000_000_000
        store = PrometheusStore(server.url)
        scraped = store.gpu_series(start_ns, end_ns, every_s=5, scope=ALL)
        store.close()
    finally:
        stop.set()
        agent.join(timeout=30)
        server.stop()
    embedded = EmbeddedSqliteStore(tmp_path / "agent.sqlite")
    written = embedded.gpu_series(start_ns, end_ns, every_s=5, scope=ALL)
    each = embedded.gpu_series(start_ns - SECOND_NS, end_ns + SECOND_NS, every_s=1, scope=ALL)
    embedded.close()
    assert len(scraped) == len(written) == 4 * 2
    assert np.array_equal(scraped.tags["host"], written.tags["host"])
    # A scrape takes the newest reading up to a second old: where the power moved within a
    # bucket (a job started or ended), the scraped mean may take one reading more or less at
    # either edge, so it lies within the readings of the bucket widened by a second.
    low, high = _power_range_around(scraped, each, 5 * SECOND_NS)
    assert np.all(scraped.values["power_w"] >= 0.95 * low), (scraped.values["power_w"], low)
    assert np.all(scraped.values["power_w"] <= 1.05 * high), (scraped.values["power_w"], high)
    steady = high <= 1.05 * low
    assert steady.sum() >= 2  # buckets that hold one power are compared closely
    np.testing.assert_allclose(
        scraped.values["power_w"][steady], written.values["power_w"][steady], rtol=0.05
    )
    # Prometheus extrapolates a counter's increase to the bucket's edges: close, not exact,
    # and only where the power held (a step at an edge is extrapolated across the bucket)
    total = float(np.sum(scraped.values["energy_j"][steady]))
    assert total == pytest.approx(float(np.sum(written.values["energy_j"][steady])), rel=0.1)


SECOND_NS = 1_000_000_000


def _power_range_around(buckets: Series, readings: Series, every_ns: int) -> tuple[Floats, Floats]:
    """Per bucket of ``buckets``, the lowest and highest ``power_w`` of the same GPU's
    readings from a second before the bucket to a second after it."""
    low, high = np.full(len(buckets), np.inf), np.full(len(buckets), -np.inf)
    for k in range(len(buckets)):
        same = (readings.tags["host"] == buckets.tags["host"][k]) & (
            readings.tags["gpu"] == buckets.tags["gpu"][k]
        )
        start = buckets.time_ns[k] - SECOND_NS
        near = (
            same
            & (readings.time_ns >= start)
            & (readings.time_ns < start + every_ns + 2 * SECOND_NS)
        )
        power = readings.values["power_w"][near]
        low[k], high[k] = np.nanmin(power), np.nanmax(power)
    return low, high


def test_a_measurement_with_more_series_than_the_stores_series_limit_still_reads(
    tmp_path: Path,
) -> None:
    """Regression: one series per job over a day passed VictoriaMetrics' limits: on
    /api/v1/series (30,000 by default; 20 here), which the store asked to split its reads,
    then on the series one query may touch (300,000; 40 here), which a ``count by`` host
    of the jobs touched: it indexes series per day, however short the query's window."""

    class Limited(VictoriaMetricsServer):
        def _command(self) -> list[str]:
            limits = ["-search.maxSeries=20", "-search.maxUniqueTimeseries=40"]
            return [*super()._command(), *limits]

    server = Limited(tmp_path)
    server.start()
    try:
        gpus = [r for r in fleet_readings() if r.measurement == "gpu"]
        jobs = [
            Reading(
                "gpu_job",
                {**{k: r.tags[k] for k in ("host", "gpu", "cluster", "zone", "rack")},
                 "job": f"job-{r.time_ns // 10**10 % 18}", "scheduler": "slurm"},
                {"power_w": 100.0 + i % 7},
                r.time_ns,
            )
            for i, r in enumerate(gpus[::4])
        ]  # fmt: skip
        server.write(encode_many([*gpus, *jobs]))
        # a host per group: its two GPUs' 36 jobs stay within the 40
        store = PrometheusStore(
            server.url, clock=ManualClock(start_ns=END_NS), max_series_per_query=2
        )
        try:
            series = store.job_series(START_NS, END_NS, every_s=60, scope=ALL)
        finally:
            store.close()
    finally:
        server.stop()
    assert len(set(series.tags["job"])) == 18
    jobs_by_key: dict[tuple[str, ...], list[float]] = {}
    for r in jobs:
        key = (r.tags["host"], r.tags["gpu"], r.tags["job"])
        jobs_by_key.setdefault(key, []).append(float(r.fields["power_w"] or 0))
    assert len(jobs_by_key) > 20  # more than the server lists in one /api/v1/series
    assert len(
        {
            (h, g, j)
            for h, g, j in zip(*(series.tags[t] for t in ("host", "gpu", "job")), strict=True)
        }
    ) == len(jobs_by_key)


def test_a_fleet_of_many_hosts_is_read_in_groups_within_the_query_length_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a group matching every host not yet seen (host!~"all|the|others") ran
    past VictoriaMetrics' 16 KB query limit at 1,250 hosts and the read failed. A query
    with two series selectors (``energy_j``'s gauge ``or`` counter, ``power_sd_w``) holds
    no more host names in all: they were 16,222 characters here, twice the others."""
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        hosts = [f"gpu-node-{i:05d}" for i in range(1_400)]
        points = [
            Reading("gpu", {"host": h, "gpu": "0"}, {"power_w": 100.0 + i % 9}, START_NS + s)
            for i, h in enumerate(hosts)
            for s in (0, 20_000_000_000, 40_000_000_000)
        ]
        server.write(encode_many(points))
        store = PrometheusStore(
            server.url, clock=ManualClock(start_ns=END_NS), max_series_per_query=1_300
        )
        queries: list[str] = []
        post = store._post

        def recorded(path: str, form: Mapping[str, str]) -> httpx.Response:
            queries.append(form.get("query", ""))
            return post(path, form)

        monkeypatch.setattr(store, "_post", recorded)
        try:
            series = store.gpu_series(START_NS, START_NS + 60 * 10**9, every_s=60, scope=ALL)
        finally:
            store.close()
    finally:
        server.stop()
    assert sorted(series.tags["host"]) == hosts
    assert series.values["power_w"].tolist() == [100.0 + i % 9 for i in range(1_400)]
    assert series.values["power_sd_w"].tolist() == [0.0] * 1_400  # equal samples
    assert max(map(len, queries)) < MAX_HOST_CHARS + 1_000  # the host names and a little
