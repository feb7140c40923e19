"""The agent under faults, as a real process against a real influxd (or a hostile peer).

Each test counts what the agent read (its own account when it stops), what the store
holds, and what the agent counted as dropped or still keeps: every intact line must be
delivered or counted, with no traceback in the agent's log.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import httpx
import pytest

from tests.agent.http_peer import Answer
from tests.drip import drip_server
from tests.faults.agent_process import DB, Agent, agent_config, points, wait_for
from tests.faults.conftest import Record
from tests.faults.proxy import fault_proxy
from tests.influxd import InfluxServer, free_port
from wattwise.agent.wal import Wal
from wattwise.agent.wal_files import HEADER, MAGIC, segment_path
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode_many

pytestmark = pytest.mark.faults
NO_FILE_CAPABILITIES = (
    ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
)
"""Run as the unit runs the agent: root without these obeys a file's mode like any user."""


def clean(agent: Agent) -> None:
    assert "Traceback" not in agent.text(), agent.text()[-3000:]


def queue_lines(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("wattwise_agent_queue_lines "))
    return float(line.split()[1])


def test_retry_after_of_a_day_or_forever(
    tmp_path: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    waits = ["inf", "1e10", "86400", "Fri, 31 Dec 9999 23:59:59 GMT"]

    def script(n: int) -> Answer | None:
        return Answer(503, {"Retry-After": waits[n]}) if n < len(waits) else None

    with fault_proxy(influxd_private.url, script) as url:
        agent = Agent(agent_config(tmp_path, url), tmp_path / "agent.log")
        try:
            wait_for(lambda: points(influxd_private) > 300, 60)
        finally:
            status = agent.stop()
    summary, delivered = agent.summary(), points(influxd_private)
    assert status == 0 and summary.left == summary.dropped == 0
    assert delivered == summary.read
    clean(agent)
    reliability(
        "agent",
        "store answers 503 with Retry-After inf, 1e10, 86400, year 9999",
        "waits at most backoff_max_s each time, then delivers",
        appended=summary.read,
        delivered=delivered,
        dropped=summary.dropped,
        kept=summary.left,
    )


def test_disk_full_under_the_wal(
    small_tmpfs: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    influxd_private.stop()  # the store is down: the WAL grows until the 2 MiB disk is full
    port = free_port()
    config = agent_config(
        small_tmpfs, influxd_private.url, nodes=32, interval_s=0.1,
        metrics=f"prometheus_port = {port}",
    )  # fmt: skip
    agent = Agent(config, small_tmpfs.parent / "agent.log")
    try:
        wait_for(lambda: "cannot append" in agent.text(), 120)
        time.sleep(3)  # sampling goes on, the newest lines are dropped and counted
        assert agent.proc.poll() is None
        influxd_private.start()
        wait_for(lambda: queue_lines(port) < 2000, 120)
    finally:
        status = agent.stop()
    summary, delivered = agent.summary(), points(influxd_private)
    assert status == 0 and summary.dropped > 0
    assert delivered + summary.dropped + summary.left == summary.read
    assert "torn" not in agent.text() and "corrupt" not in agent.text()
    clean(agent)
    reliability(
        "agent",
        "WAL on a full 2 MiB tmpfs while the store is down",
        "drops the newest lines (counted, logged once a minute), keeps sampling; "
        "delivers the rest when the store is back",
        appended=summary.read,
        delivered=delivered,
        dropped=summary.dropped,
        kept=summary.left,
    )


def test_store_dripping_its_answer_then_sigterm(
    tmp_path: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    with drip_server(interval_s=0.5) as drip:
        first = Agent(agent_config(tmp_path, drip.url), tmp_path / "first.log")
        wait_for(lambda: "no answer within 2 s" in first.text(), 60)
        status = first.stop(timeout_s=30)  # the unit's TimeoutStopSec=30s
    assert status == 0
    stopped = first.summary()
    second = Agent(agent_config(tmp_path, influxd_private.url), tmp_path / "second.log")
    try:
        wait_for(lambda: points(influxd_private) > stopped.read + 100, 60)
    finally:
        assert second.stop() == 0
    resumed, delivered = second.summary(), points(influxd_private)
    assert stopped.left > 0 and resumed.dropped == 0
    assert delivered + resumed.left == stopped.read + resumed.read
    clean(first)
    clean(second)
    reliability(
        "agent",
        "store sends its answer a byte every 0.5 s; then SIGTERM",
        "abandons each request at influx.timeout_s (logged), exits 0 within the stop "
        "timeout; the next start delivers what waited in the WAL",
        appended=stopped.read + resumed.read,
        delivered=delivered,
        dropped=resumed.dropped,
        kept=resumed.left,
    )


def test_proxy_refusing_every_line(
    tmp_path: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    refusing = [True]
    refused = Answer(400, {"Content-Type": "application/json"}, b'{"error":"bad request"}')

    def script(n: int) -> Answer | None:
        return refused if refusing[0] else None

    with fault_proxy(influxd_private.url, script) as url:
        config = agent_config(tmp_path, url, sender="batch_max_lines = 50")
        agent = Agent(config, tmp_path / "agent.log")
        try:
            wait_for(lambda: "refused every line of 3 batches" in agent.text(), 60)
            time.sleep(2)  # held: nothing more goes to the dead-letter file
            refusing[0] = False  # the proxy is fixed
            wait_for(lambda: "accepts lines again" in agent.text(), 60)
            time.sleep(2)
        finally:
            status = agent.stop()
    summary, delivered = agent.summary(), points(influxd_private)
    letters = (tmp_path / "dead-letter" / "dead-letter.jsonl").read_text().splitlines()
    assert status == 0 and summary.dead_lettered == len(letters) <= 2 * 50
    assert delivered + summary.dead_lettered + summary.left == summary.read
    assert all(json.loads(x)["reason"] == "bad request" for x in letters)
    clean(agent)
    reliability(
        "agent",
        "a proxy answers 400 to every write",
        "dead-letters 2 batches, then holds the data in the WAL and alerts; delivers once "
        "the proxy is fixed",
        appended=summary.read,
        delivered=delivered,
        dropped=f"{summary.dead_lettered} dead-lettered",
        kept=summary.left,
    )


def test_label_the_encoder_refuses(tmp_path: Path, reliability: Record) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = agent_config(tmp_path, url, agent='[agent.labels]\ntime = "t1"')
    agent = Agent(config, tmp_path / "agent.log")
    status = agent.proc.wait(timeout=60)
    assert status == 2 and "agent.labels.time" in agent.text()
    assert not (tmp_path / "wal").exists()
    clean(agent)
    reliability(
        "agent",
        "a label named time (or NUL, a trailing backslash, a field's name)",
        "refuses to start: exit 2 naming agent.labels.time (check-config says the same)",
        appended=0,
        delivered=0,
        dropped=0,
        kept=0,
    )


OLD_NS = 1_700_000_000 * 1_000_000_000
"""Lines written into a WAL before the test's agent starts are stamped in 2023."""
BEFORE_NOW = f"WHERE time < {OLD_NS + 86_400 * 1_000_000_000}"


def prebuilt_wal(directory: Path, ticks: int = 40) -> list[list[bytes]]:
    """A WAL left by an earlier agent: ``ticks`` records of a simulated fleet's lines."""
    clock = ManualClock(start_ns=OLD_NS)
    fleet = SimFleet(FleetSpec.uniform(4, 4, seed=5), clock)
    wal = Wal(
        directory, max_bytes=64 << 20, sync="none", clock=clock, segment_bytes=160 * 1024
    )  # ~9 records each
    records = []
    for _ in range(ticks):
        clock.advance(1.0)
        records.append(encode_many(fleet.read()))
        assert wal.append(records[-1])
    wal.close()
    fleet.close()
    return records


def record_offsets(path: Path) -> list[int]:
    data, offsets, offset = path.read_bytes(), [], len(MAGIC)
    while offset < len(data):
        offsets.append(offset)
        (length,) = struct.unpack_from("<I", data, offset)
        offset += HEADER.size + length
    return offsets


def lines_in(path: Path) -> int:
    data = path.read_bytes()
    return sum(struct.unpack_from("<I", data, offset + 4)[0] for offset in record_offsets(path))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def test_damaged_records_in_the_wal(
    tmp_path: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    records = prebuilt_wal(tmp_path / "wal")
    first = segment_path(tmp_path / "wal", 1)
    fifth = record_offsets(first)[4]
    flip(first, fifth + HEADER.size + 40)  # one byte of the fifth record's payload
    flip(segment_path(tmp_path / "wal", 3), 2)  # the magic of the third segment
    written = sum(len(r) for r in records)
    in_fifth = len(records[4])
    agent = Agent(agent_config(tmp_path, influxd_private.url), tmp_path / "agent.log")
    try:
        wait_for(lambda: points(influxd_private, BEFORE_NOW) >= written - in_fifth, 60)
        time.sleep(1)
    finally:
        assert agent.stop() == 0
    summary, delivered = agent.summary(), points(influxd_private, BEFORE_NOW)
    assert delivered == written - in_fifth and summary.dropped == in_fifth
    assert "skipped" in agent.text() and "damaged bytes" in agent.text()
    clean(agent)
    reliability(
        "agent",
        "a flipped byte in record 5 of a segment, a flipped magic byte in another",
        "skips the damaged record (counted, logged) and the magic, delivers every other record",
        appended=written,
        delivered=delivered,
        dropped=summary.dropped,
        kept=0,
    )


def test_stray_files_and_an_unreadable_segment_in_the_wal(
    tmp_path: Path, influxd_private: InfluxServer, reliability: Record
) -> None:
    influxd_private.create_database(DB)
    wal_dir = tmp_path / "wal"
    records = prebuilt_wal(wal_dir)
    written = sum(len(r) for r in records)
    segment_path(wal_dir, 2).rename(wal_dir / "2.seg")  # beside zero-padded names
    (wal_dir / "garbage.seg").write_bytes(b"not a segment")
    blocked = segment_path(wal_dir, 4)
    in_blocked = lines_in(blocked)
    blocked.chmod(0)  # the agent's user cannot read it
    config = agent_config(tmp_path, influxd_private.url)
    first = Agent(config, tmp_path / "first.log", argv_prefix=NO_FILE_CAPABILITIES)
    try:
        wait_for(lambda: "cannot read segment" in first.text(), 60)
        wait_for(lambda: points(influxd_private, BEFORE_NOW) >= written - in_blocked, 60)
    finally:
        assert first.stop() == 0
    without_blocked = points(influxd_private, BEFORE_NOW)
    blocked.chmod(0o600)  # the operator fixes its mode: the next start delivers it
    second = Agent(config, tmp_path / "second.log", argv_prefix=NO_FILE_CAPABILITIES)
    try:
        wait_for(lambda: points(influxd_private, BEFORE_NOW) >= written, 60)
    finally:
        assert second.stop() == 0
    assert (
        without_blocked == written - in_blocked and points(influxd_private, BEFORE_NOW) == written
    )
    assert (wal_dir / "garbage.seg").read_bytes() == b"not a segment"
    assert "garbage.seg is not a segment" in first.text()
    clean(first)
    clean(second)
    reliability(
        "agent",
        "garbage.seg, a 2.seg beside zero-padded names, a segment the agent cannot read",
        "starts; reports and leaves the strays, orders segments by number, skips the "
        "unreadable one with an error (its lines stay on disk) and delivers it once readable",
        appended=written,
        delivered=f"{without_blocked}, then {written}",
        dropped=0,
        kept=f"{in_blocked} until readable",
    )
