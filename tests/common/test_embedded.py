"""The embedded SQLite store, fed line protocol exactly as the sender feeds InfluxDB."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wattwise.collector.base import FieldValue, Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import ParsedLine, encode_many
from wattwise.common.transport import Transport
from wattwise.errors import RejectedBatch, TransientDeliveryError

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def gpu(index: int, time_ns: int, power_w: float, **extra: float | int | bool | str) -> Reading:
    tags = {"host": "n1", "gpu": str(index), "zone": "hall-2"}
    return Reading(
        "gpu", tags, {"power_w": power_w, "mem_used_bytes": 2**40 + index, **extra}, time_ns
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    opened = EmbeddedStore(tmp_path / "telemetry.sqlite")
    yield opened
    opened.close()


def test_is_a_transport(store: EmbeddedStore) -> None:
    transport: Transport = store
    assert transport.name == "embedded"


def test_reads_back_exactly_what_was_written(store: EmbeddedStore) -> None:
    fields: dict[str, FieldValue] = {
        "f": 0.1 + 0.2,
        "whole": 300.0,
        "neg0": -0.0,
        "tiny": 5e-324,
        "i": -(2**63),
        "b": True,
        "s": 'a "q" \\ ,= ü',
    }
    store.write(encode_many([Reading("custom", {"k": "v w"}, fields, T0)]))
    (point,) = store.latest("custom")
    assert point == ParsedLine("custom", {"k": "v w"}, fields, T0)
    for key, value in fields.items():
        assert type(point.fields[key]) is type(value), key
    assert math.copysign(1.0, point.fields["neg0"]) == -1.0  # type: ignore[arg-type]
    assert store.select("custom", "i") == [(T0, {"k": "v w"}, -(2**63))]


def test_schema_float_given_as_int_is_stored_as_float(store: EmbeddedStore) -> None:
    store.write(encode_many([gpu(0, T0, 300)]))
    ((_, _, power_w),) = store.select("gpu", "power_w")
    assert type(power_w) is float and power_w == 300.0


def test_writing_the_same_sample_again_overwrites_it(store: EmbeddedStore) -> None:
    store.write(encode_many([gpu(0, T0, 100.0), gpu(0, T0 + S, 110.0)]))
    store.write(encode_many([gpu(0, T0, 105.5)]))  # a resend with a corrected value
    store.write(encode_many([gpu(0, T0, 105.5)]))  # and a plain resend
    assert store.count("gpu") == 4
    assert store.count("gpu", "power_w") == 2
    assert [value for _, _, value in store.select("gpu", "power_w")] == [105.5, 110.0]


def test_latest_is_the_newest_point_of_each_series(store: EmbeddedStore) -> None:
    store.write(encode_many([gpu(0, T0, 100.0), gpu(1, T0, 200.0)]))
    store.write(encode_many([gpu(0, T0 + S, 101.0, temp_c=55.0)]))
    store.write(encode_many([gpu(1, T0 - S, 199.0)]))  # late, older data
    latest = store.latest("gpu")
    assert [(p.tags["gpu"], p.time_ns, p.fields["power_w"]) for p in latest] == [
        ("0", T0 + S, 101.0),
        ("1", T0, 200.0),
    ]
    assert latest[0].fields == {"power_w": 101.0, "mem_used_bytes": 2**40, "temp_c": 55.0}
    assert store.latest("host") == []


def test_select_filters_by_time_range_and_tags(store: EmbeddedStore) -> None:
    store.write(
        encode_many([gpu(i, T0 + t * S, 100.0 * i + t) for t in range(5) for i in range(3)])
    )
    rows = store.select("gpu", "power_w", start_ns=T0 + S, end_ns=T0 + 3 * S, tags={"gpu": "2"})
    assert rows == [
        (T0 + S, {"host": "n1", "gpu": "2", "zone": "hall-2"}, 201.0),
        (T0 + 2 * S, {"host": "n1", "gpu": "2", "zone": "hall-2"}, 202.0),
    ]
    assert len(store.select("gpu", "power_w", tags={"zone": "hall-2"})) == 15
    assert store.select("gpu", "power_w", tags={"zone": "other"}) == []


def test_malformed_line_rejects_the_whole_batch_and_says_which(store: EmbeddedStore) -> None:
    good = encode_many([gpu(0, T0, 100.0)])
    with pytest.raises(RejectedBatch, match="line 1 of 2"):
        store.write([*good, b"gpu,host=n1 power_w=abc 1"])
    assert store.count("gpu") == 0
    store.write(good)
    assert store.count("gpu") == 2


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "telemetry.sqlite"
    first = EmbeddedStore(path)
    first.write(encode_many([gpu(0, T0, 100.0)]))
    first.close()
    second = EmbeddedStore(path)
    second.write(encode_many([gpu(0, T0 + S, 101.0)]))  # the same series, known from disk
    assert [value for _, _, value in second.select("gpu", "power_w")] == [100.0, 101.0]
    assert len({tuple(tags.items()) for _, tags, _ in second.select("gpu", "power_w")}) == 1
    second.close()


def test_locked_database_is_a_transient_delivery_error(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite"
    store = EmbeddedStore(path, busy_timeout_s=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    with pytest.raises(TransientDeliveryError, match="locked"):
        store.write(encode_many([gpu(0, T0, 100.0)]))
    other.execute("ROLLBACK")
    other.close()
    store.write(encode_many([gpu(0, T0, 100.0)]))  # nothing half-remembered from the failure
    assert store.count("gpu") == 2
    store.close()


def test_unopenable_path_is_a_transient_delivery_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(TransientDeliveryError, match="cannot open"):
        EmbeddedStore(tmp_path / "file" / "telemetry.sqlite")


def test_readers_in_other_threads_while_one_thread_writes(store: EmbeddedStore) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def read_until_done() -> None:
        try:
            while not done.is_set():
                store.latest("gpu")
                store.count("gpu", "power_w")
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read_until_done) for _ in range(2)]
    for reader in readers:
        reader.start()
    for t in range(50):
        store.write(encode_many([gpu(i, T0 + t * S, float(t)) for i in range(4)]))
    done.set()
    for reader in readers:
        reader.join(timeout=10)
    assert errors == []
    assert store.count("gpu", "power_w") == 200


def _batch(k: int) -> list[bytes]:
    start = 1_700_000_000_000_000_000 + k * 1_000_000_000
    return [
        f"gpu,host=h{i % 50},gpu={i % 8} power_w={i * 1.5 + k} {start + i}".encode()
        for i in range(2000)
    ]


def test_the_wal_file_shrinks_back_once_a_long_reader_is_done(tmp_path: Path) -> None:
    # Regression: writes while a reader held a snapshot grew the SQLite WAL (2.4 GB in
    # the demo's minutes), and it never shrank: checkpoints reuse the file, never cut it.
    path = tmp_path / "wattwise.sqlite"
    wal = tmp_path / "wattwise.sqlite-wal"
    limit = 1 << 20
    store = EmbeddedStore(path, wal_limit_bytes=limit)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM samples").fetchall()  # holds its snapshot
    for k in range(20):
        store.write(_batch(k))
    grown = wal.stat().st_size
    reader.execute("COMMIT")
    reader.close()
    for k in range(20, 25):
        store.write(_batch(k))
    assert grown > 4 * limit  # the reader really held the checkpoints back …
    # … and once it is done the file is cut back to the limit (plus the writes since the
    # last checkpoint) instead of staying at its high-water mark.
    assert wal.stat().st_size < grown / 2
    assert store.count("gpu", "power_w") == 25 * 2000
    store.close()
