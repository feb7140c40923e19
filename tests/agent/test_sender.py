from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.influxd import InfluxServer
from wattwise.agent.dead_letter import DEAD_LETTER_FILE
from wattwise.agent.sender import Sender
from wattwise.agent.wal import Wal
from wattwise.clock import Clock, ManualClock, SystemClock
from wattwise.common.influx import InfluxTransport
from wattwise.common.secrets import Secret

T0 = 1_700_000_000_000_000_000


def gpu_lines(count: int, start: int = 0) -> list[bytes]:
    return [
        b"gpu,host=a,gpu=%d power_w=%d.5 %d" % (i % 8, i, T0 + i * 1_000_000_000)
        for i in range(start, start + count)
    ]


def make_sender(
    tmp_path: Path, transport: InfluxTransport, clock: Clock | None = None, **kw: float
) -> tuple[Wal, Sender]:
    clock = clock or ManualClock()
    wal = Wal(tmp_path / "wal", max_bytes=64 << 20, sync="none", clock=clock)
    sender = Sender(
        wal,
        transport,
        clock=clock,
        dead_letter_dir=tmp_path / "dead",
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )
    return wal, sender


def count(server: InfluxServer, db: str) -> int:
    rows = server.rows("SELECT count(power_w) FROM gpu", db)
    return int(rows[0]["count"]) if rows else 0  # type: ignore[call-overload]


def dead_letters(tmp_path: Path) -> list[dict[str, str]]:
    path = tmp_path / "dead" / DEAD_LETTER_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_backlog_is_delivered_in_batches_of_at_most_batch_max_lines(
    tmp_path: Path, influxd: InfluxServer
) -> None:
    influxd.create_database("send_backlog")
    transport = InfluxTransport(influxd.url, database="send_backlog")
    wal, sender = make_sender(tmp_path, transport, batch_max_lines=5000)
    for tick in range(200):
        wal.append(gpu_lines(64, start=tick * 64))
    assert sender.send_once()
    assert count(influxd, "send_backlog") == 5000
    assert sender.flush(timeout_s=60)
    assert count(influxd, "send_backlog") == 12_800
    assert sender.stats().sent_lines_total == 12_800
    assert wal.stats().queue_lines == 0


def test_malformed_lines_go_to_dead_letter_file_with_reason_and_the_rest_is_stored(
    tmp_path: Path, influxd: InfluxServer
) -> None:
    influxd.create_database("send_malformed")
    transport = InfluxTransport(influxd.url, database="send_malformed")
    wal, sender = make_sender(tmp_path, transport)
    good = gpu_lines(100)
    bad = [b"gpu,host=a power_w=oops!! %d" % T0, b"gpu,host=a power_w=1i %d" % (T0 + 1)]
    wal.append(good[:37] + bad[:1] + good[37:80] + bad[1:] + good[80:])
    assert sender.send_once()
    letters = dead_letters(tmp_path)
    assert [d["line"].encode() for d in letters] == bad
    assert "unable to parse" in letters[0]["reason"]
    assert "field type conflict" in letters[1]["reason"]
    assert all(d["time"].startswith("2023-11-14T22:13:20") for d in letters)
    assert count(influxd, "send_malformed") == 100
    assert sender.stats().dead_lettered_lines_total == 2
    assert wal.stats().queue_lines == 0


def test_unauthorized_keeps_data_logs_loudly_and_delivers_once_credentials_work(
    tmp_path: Path, influxd_auth: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    influxd_auth.create_database("send_auth")
    password = "writer-pass-1234"
    transport = InfluxTransport(
        influxd_auth.url, database="send_auth", username="writer", password=Secret(password)
    )
    clock = ManualClock()
    wal, sender = make_sender(tmp_path, transport, clock)
    wal.append(gpu_lines(50))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert not sender.send_once()
            clock.advance(5)
    stats = sender.stats()
    assert stats.auth_failing and "AuthError" in (stats.last_error or "")
    assert wal.stats().queue_lines == 50
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # rate-limited: once per minute, not once per attempt
    assert "50 lines kept" in errors[0].getMessage()
    assert password not in caplog.text and password not in (stats.last_error or "")
    # The operator creates the user the agent is configured with.
    influxd_auth.query(f"CREATE USER writer WITH PASSWORD '{password}'")
    influxd_auth.query('GRANT WRITE ON "send_auth" TO writer')
    assert sender.send_once()
    assert count(influxd_auth, "send_auth") == 50
    assert not sender.stats().auth_failing


@contextmanager
def own_influxd(tmp_path: Path, **kw: int) -> Iterator[InfluxServer]:
    """A real influxd of the test's own (to stop and start, or with a small body limit)."""
    (tmp_path / "influxd").mkdir()
    server = InfluxServer(tmp_path / "influxd", **kw)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_batch_over_the_body_limit_is_split_and_all_delivered(tmp_path: Path) -> None:
    with own_influxd(tmp_path, max_body_bytes=4000) as server:
        server.create_database("small")
        transport = InfluxTransport(server.url, database="small")
        wal, sender = make_sender(tmp_path, transport)
        wal.append(gpu_lines(1000))
        assert sender.send_once()
        assert count(server, "small") == 1000
        assert dead_letters(tmp_path) == []


def test_single_line_over_the_body_limit_is_dead_lettered(tmp_path: Path) -> None:
    huge = b'gpu,host=a note="%s" %d' % (b"x" * 5000, T0)
    with http_peer([Answer(413), Answer(413), Answer(204)]) as peer:
        wal, sender = make_sender(tmp_path, InfluxTransport(peer.url, database="db"))
        wal.append([huge, gpu_lines(1)[0]])
        assert sender.send_once()
    letters = dead_letters(tmp_path)
    assert [d["line"].encode() for d in letters] == [huge]
    assert "too large" in letters[0]["reason"]
    assert peer.requests[-1].lines() == gpu_lines(1)


def test_retry_after_is_honoured_before_resending(tmp_path: Path) -> None:
    clock = ManualClock()
    answers = [Answer(503, {"Retry-After": "30"}), Answer(204)]
    with http_peer(answers) as peer:
        wal, sender = make_sender(tmp_path, InfluxTransport(peer.url, database="db"), clock)
        wal.append(gpu_lines(3))
        started = clock.monotonic()
        assert sender.flush(timeout_s=120)
    assert len(peer.requests) == 2
    assert clock.monotonic() - started >= 30.0
    assert peer.requests[1].lines() == gpu_lines(3)
    assert sender.stats().retried_batches_total == 1


def test_outage_backs_off_exponentially_and_delivers_after_restart(tmp_path: Path) -> None:
    with own_influxd(tmp_path) as server:
        outage_then_recovery(tmp_path, server)


def outage_then_recovery(tmp_path: Path, influxd_private: InfluxServer) -> None:
    influxd_private.create_database("send_outage")
    clock = ManualClock()
    transport = InfluxTransport(influxd_private.url, database="send_outage", timeout_s=2)
    wal, sender = make_sender(tmp_path, transport, clock, backoff_initial_s=0.5, backoff_max_s=8)
    wal.append(gpu_lines(20))
    influxd_private.stop()
    started = clock.monotonic()
    assert not sender.flush(timeout_s=60)
    attempts = sender.stats().retried_batches_total
    # Full jitter under a doubling ceiling (0.5, 1, 2, 4, 8, 8, …): far fewer
    # attempts than a fixed 0.5 s retry (120) would make, but more than a handful.
    assert 6 <= attempts <= 40
    assert clock.monotonic() - started <= 60 + 8
    assert "ConnectError" in (sender.stats().last_error or "")
    assert wal.stats().queue_lines == 20
    influxd_private.start()
    assert sender.flush(timeout_s=60)
    assert count(influxd_private, "send_outage") == 20


def test_run_sends_until_stopped(tmp_path: Path, influxd: InfluxServer) -> None:
    influxd.create_database("send_run")
    transport = InfluxTransport(influxd.url, database="send_run")
    wal, sender = make_sender(tmp_path, transport, SystemClock(), idle_poll_s=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        for tick in range(5):
            wal.append(gpu_lines(8, start=tick * 8))
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while sender.stats().sent_lines_total < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert count(influxd, "send_run") == 40


def test_retry_after_an_interrupted_bisection_does_not_dead_letter_a_line_twice(
    tmp_path: Path,
) -> None:
    bad, good = b"gpu power_w=oops!! 1", gpu_lines(1)[0]
    rejected = Answer(400, {}, b'{"error":"unable to parse"}')
    answers = [rejected, rejected, Answer(503), Answer(204)]
    with http_peer(answers) as peer:
        wal, sender = make_sender(tmp_path, InfluxTransport(peer.url, database="db"))
        wal.append([bad, good])
        assert not sender.send_once()  # both, then bad alone (dead-lettered), then good: 503
        assert sender.send_once()  # only the good line is resent
    assert [r.lines() for r in peer.requests] == [[bad, good], [bad], [good], [good]]
    assert [d["line"].encode() for d in dead_letters(tmp_path)] == [bad]
    assert wal.stats().queue_lines == 0


def test_ten_minute_backlog_of_64_gpus_is_delivered_whole(
    tmp_path: Path, influxd: InfluxServer
) -> None:
    influxd.create_database("send_drain")
    transport = InfluxTransport(influxd.url, database="send_drain")
    wal, sender = make_sender(tmp_path, transport, SystemClock())
    fields = b"power_w=612.5,temp_c=61.0,sm_clock_mhz=1980i,util_gpu_pct=97.0,energy_j=1.5e6"
    for second in range(600):
        stamp = T0 + second * 1_000_000_000
        wal.append([b"gpu,host=n1,gpu=%d %s %d" % (g, fields, stamp) for g in range(64)])
    # How fast is measured by bench/backlog_drain.py, not asserted here.
    assert sender.flush(timeout_s=300)
    assert count(influxd, "send_drain") == 38_400


def run_until(sender: Sender, done: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Run the sender on its own thread, as the agent does, until ``done`` or the timeout."""
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,), name="wattwise-sender")
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return done()


@pytest.mark.parametrize(
    "retry_after", ["inf", "1e10", "86400", "Fri, 31 Dec 9999 23:59:59 GMT", "nan"]
)
def test_retry_after_of_a_day_or_forever_waits_at_most_the_backoff_maximum(
    tmp_path: Path, retry_after: str
) -> None:
    # Retry-After: inf used to kill the sender thread (OverflowError in its wait) while
    # sampling went on; 86400 stalled delivery for a day.
    answers = [Answer(503, {"Retry-After": retry_after}), Answer(204)]
    with http_peer(answers) as peer:
        transport = InfluxTransport(peer.url, database="db")
        wal, sender = make_sender(tmp_path, transport, SystemClock(), backoff_max_s=0.2)
        wal.append(gpu_lines(30))
        assert run_until(sender, lambda: wal.stats().queue_lines == 0)
    assert [r.lines() for r in peer.requests] == [gpu_lines(30), gpu_lines(30)]


class FailsOnce:
    """The real transport, after one exception no delivery rule expects (a bug's stand-in)."""

    name = "fails-once"

    def __init__(self, inner: InfluxTransport) -> None:
        self.inner = inner
        self.failed = False

    def write(self, lines: Sequence[bytes]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unexpected")
        self.inner.write(lines)

    def close(self) -> None:
        self.inner.close()


def test_unexpected_exception_is_logged_counted_and_the_sender_goes_on(
    tmp_path: Path, influxd: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    influxd.create_database("send_unexpected")
    transport = FailsOnce(InfluxTransport(influxd.url, database="send_unexpected"))
    wal, sender = make_sender(tmp_path, transport, SystemClock(), backoff_max_s=0.2)  # type: ignore[arg-type]
    wal.append(gpu_lines(25))
    with caplog.at_level(logging.ERROR):
        assert run_until(sender, lambda: count(influxd, "send_unexpected") == 25)
    assert sender.stats().sender_errors_total == 1
    assert "unexpected error" in caplog.text and "RuntimeError" in caplog.text


REFUSED = Answer(400, {"Content-Type": "application/json"}, b'{"error":"bad request"}')


def test_proxy_refusing_everything_holds_the_data_after_three_whole_batches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A broken proxy answering 400 to everything sent all data to the dead-letter file.
    answers = [REFUSED]
    with http_peer(answers) as peer, caplog.at_level(logging.ERROR):
        transport = InfluxTransport(peer.url, database="db")
        wal, sender = make_sender(tmp_path, transport, batch_max_lines=10)
        wal.append(gpu_lines(50))
        for _ in range(6):
            sender.send_once()
        assert sender.stats().rejecting_all
        assert len(dead_letters(tmp_path)) == 20  # two batches, before the pattern showed
        assert wal.stats().queue_lines == 30
        assert caplog.text.count("refused every line of 3 batches") == 1
        answers.append(Answer(204))  # the proxy is fixed
        assert sender.flush(timeout_s=60)
    assert not sender.stats().rejecting_all
    delivered = [line for r in peer.requests if r.lines() != [b""] for line in r.lines()]
    assert set(gpu_lines(50)[20:]) <= set(delivered)
    assert len(dead_letters(tmp_path)) == 20 and wal.stats().queue_lines == 0


def test_full_dead_letter_file_holds_refused_lines_in_the_wal_until_moved_away(
    tmp_path: Path, influxd: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    influxd.create_database("send_dead_full")
    transport = InfluxTransport(influxd.url, database="send_dead_full")
    wal, sender = make_sender(tmp_path, transport, batch_max_lines=10, dead_letter_max_bytes=400)
    bad = [b"gpu,host=a power_w=oops%d!! %d" % (i, T0) for i in range(4)]
    for i, line in enumerate(bad):
        wal.append([*gpu_lines(9, start=i * 9), line])
    with caplog.at_level(logging.ERROR):
        for _ in range(4):
            sender.send_once()
    kept = dead_letters(tmp_path)
    assert 0 < len(kept) < 4 and wal.stats().queue_lines > 0
    assert "dead-letter file" in caplog.text and "is full" in caplog.text
    (tmp_path / "dead" / DEAD_LETTER_FILE).rename(tmp_path / "dead" / "moved.jsonl")
    assert sender.flush(timeout_s=60)
    assert len(kept) + len(dead_letters(tmp_path)) == 4
    assert count(influxd, "send_dead_full") == 36
