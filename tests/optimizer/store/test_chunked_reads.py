"""Reading an answer a chunk of rows at a time must not change it.

Both stores convert their answers a chunk at a time so that no single call
holds the GIL for long while the API waits (bench/gil_stalls.py); these pin
that the chunk size is invisible: 1, 7 and the default give the same frames
and states, in the same order, as one whole read.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from tests.influxd import InfluxServer
from tests.optimizer.store.conftest import END_NS
from tests.optimizer.store.fleet_data import START_NS
from wattwise.clock import ManualClock
from wattwise.optimizer.store import EmbeddedSqliteStore, InfluxStore
from wattwise.optimizer.store.frames import (
    CHUNK_ROWS,
    GPU_SPEC,
    Latest,
    Row,
    sort_latest,
    to_series,
)
from wattwise.optimizer.telemetry import Scope, Series

READERS = ["gpu_series", "host_series", "zone_series", "job_series"]
CHUNK_SIZES = [1, 7, CHUNK_ROWS]


def _assert_identical(a: Series, b: Series, *, rtol: float = 0.0) -> None:
    assert np.array_equal(a.time_ns, b.time_ns)
    assert a.tags.keys() == b.tags.keys()
    for tag in a.tags:
        assert a.tags[tag].dtype == b.tags[tag].dtype == object
        assert list(a.tags[tag]) == list(b.tags[tag]), tag
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        assert a.values[name].dtype == b.values[name].dtype == np.float64
        np.testing.assert_allclose(a.values[name], b.values[name], rtol=rtol, atol=0)


@pytest.fixture(params=CHUNK_SIZES)
def chunked_influx(
    request: pytest.FixtureRequest,
    influxd: InfluxServer,
    influx_db: str,
    influx_store: InfluxStore,  # the one that fills the database
) -> Iterator[InfluxStore]:
    store = InfluxStore(
        influxd.url,
        database=influx_db,
        clock=ManualClock(start_ns=END_NS),
        chunk_rows=request.param,
    )
    yield store
    store.close()


@pytest.fixture(params=CHUNK_SIZES)
def chunked_embedded(
    request: pytest.FixtureRequest, embedded_store: EmbeddedSqliteStore
) -> Iterator[EmbeddedSqliteStore]:
    store = EmbeddedSqliteStore(embedded_store.path, chunk_rows=request.param)
    yield store
    store.close()


@pytest.mark.parametrize("every_s", [60, 25])
def test_an_influx_read_in_chunks_gives_the_whole_answer(
    chunked_influx: InfluxStore, embedded_store: EmbeddedSqliteStore, every_s: int
) -> None:
    # The embedded store read whole is the reference: the stores agree to 1e-9
    # (test_contract.py), InfluxDB and SQLite sum floats in their own orders.
    for method in READERS:
        expected = getattr(embedded_store, method)(START_NS, END_NS, every_s=every_s, scope=Scope())
        got = getattr(chunked_influx, method)(START_NS, END_NS, every_s=every_s, scope=Scope())
        assert len(got) > 0
        _assert_identical(got, expected, rtol=1e-9)
    assert chunked_influx.latest_gpus(Scope()) == embedded_store.latest_gpus(Scope())
    assert chunked_influx.latest_hosts(Scope()) == embedded_store.latest_hosts(Scope())
    assert chunked_influx.latest_zones(Scope()) == embedded_store.latest_zones(Scope())


@pytest.mark.parametrize("every_s", [60, 25])
def test_an_embedded_read_in_chunks_gives_the_whole_answer(
    chunked_embedded: EmbeddedSqliteStore, embedded_store: EmbeddedSqliteStore, every_s: int
) -> None:
    whole = EmbeddedSqliteStore(embedded_store.path, chunk_rows=10**9)
    try:
        for method in READERS:
            expected = getattr(whole, method)(START_NS, END_NS, every_s=every_s, scope=Scope())
            got = getattr(chunked_embedded, method)(
                START_NS, END_NS, every_s=every_s, scope=Scope()
            )
            assert len(got) > 0
            _assert_identical(got, expected)
        assert chunked_embedded.latest_gpus(Scope()) == whole.latest_gpus(Scope())
        assert chunked_embedded.latest_hosts(Scope()) == whole.latest_hosts(Scope())
        assert chunked_embedded.latest_zones(Scope()) == whole.latest_zones(Scope())
    finally:
        whole.close()


def test_influxd_streams_a_chunked_answer_in_several_documents(
    influxd: InfluxServer, influx_db: str
) -> None:
    # otherwise the chunked tests above would pass without ever reading a second chunk
    store = InfluxStore(influxd.url, database=influx_db, chunk_rows=7)
    try:
        chunks = list(store._read(f'SELECT "inlet_temp_c" FROM "{influx_db}".."host"'))
    finally:
        store.close()
    assert len(chunks) > 1
    assert not chunks[-1][0].get("partial")
    assert all(chunk[0].get("partial") for chunk in chunks[:-1])


def _shuffled_rows(seed: int) -> list[Row]:
    """GPU rows in random order, some (tags, time) twice with different values."""
    rng = random.Random(seed)
    hosts = ["n1", "n10", "n2", "n2a", "é", ""]
    rows: list[Row] = []
    for host in hosts:
        for gpu in ("0", "1", "10"):
            key = (host, gpu, f"u-{host}-{gpu}", "H100", "c", "z", "r")
            for bucket in range(4):
                values = [rng.choice([None, rng.random(), 3]) for _ in GPU_SPEC.columns]
                rows.append((key, bucket * 60_000_000_000, values))
    rows += [(row[0], row[1], [float(i)] * len(GPU_SPEC.columns)) for i, row in enumerate(rows[:9])]
    rng.shuffle(rows)
    return rows


def _reference_series(rows: list[Row]) -> tuple[list[tuple[object, ...]], list[list[float]]]:
    """What one sorted() over every row gives: the order the stores have always returned."""
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    keys = [(*row[0], row[1]) for row in ordered]
    values = [[float("nan") if v is None else float(v) for v in row[2]] for row in ordered]
    return keys, values


@pytest.mark.parametrize("chunk_rows", [1, 7, CHUNK_ROWS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_built_in_chunks_keep_the_order_one_sort_gives(chunk_rows: int, seed: int) -> None:
    rows = _shuffled_rows(seed)
    series = to_series(GPU_SPEC, rows, chunk_rows=chunk_rows)
    keys, values = _reference_series(rows)
    got_keys = [
        (*(str(series.tags[tag][i]) for tag in GPU_SPEC.tags), int(series.time_ns[i]))
        for i in range(len(series))
    ]
    assert got_keys == keys
    got_values = np.column_stack([series.values[c.name] for c in GPU_SPEC.columns])
    np.testing.assert_array_equal(got_values, np.array(values))


def test_an_empty_answer_built_in_chunks_has_empty_typed_columns() -> None:
    series = to_series(GPU_SPEC, [], chunk_rows=7)
    assert len(series) == 0 and series.time_ns.dtype == np.int64
    assert all(series.tags[tag].dtype == object for tag in GPU_SPEC.tags)
    assert all(series.values[c.name].shape == (0,) for c in GPU_SPEC.columns)


def test_latest_states_keep_the_order_of_their_sorted_tag_pairs() -> None:
    tag_sets = [
        {"host": "a", "gpu": "1"},
        {"host": "ab", "gpu": "1"},
        {"host": "a", "gpu": "10"},
        {"host": "a"},
        {"cluster": "", "host": "a"},
        {"host": "a", "gpu": "1", "zone": "z"},
        {"host": "é", "gpu": "0"},
        {"host": "a b", "gpu": "0"},
    ]
    latest: list[Latest] = [(tags, i, {}) for i, tags in enumerate(tag_sets)]
    random.Random(4).shuffle(latest)
    expected = sorted(latest, key=lambda item: sorted(item[0].items()))
    assert sort_latest(latest) == expected
