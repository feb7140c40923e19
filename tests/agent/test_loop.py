import threading
from collections.abc import Sequence

from wattwise.agent.loop import Schedule, TickLoop
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.errors import EncodeError, SourceError


class CountingSource:
    def __init__(self, name: str, clock: ManualClock, fail: bool = False) -> None:
        self.name = name
        self.clock = clock
        self.reads: list[float] = []
        self.fail = fail

    def read(self) -> Sequence[Reading]:
        self.reads.append(self.clock.monotonic())
        if self.fail:
            raise SourceError(f"{self.name} is broken")
        return [Reading(self.name, {"host": "n1"}, {"v": 1.0}, self.clock.time_ns())]

    def close(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def append(self, lines: Sequence[bytes]) -> bool:
        self.lines.extend(lines)
        return True


def simple_encode(r: Reading) -> bytes:
    tags = ",".join(f"{k}={v}" for k, v in sorted(r.tags.items()))
    return f"{r.measurement},{tags} v=1 {r.time_ns}".encode()


class StopAfter:
    """A manual clock whose sleep sets the stop event once it would pass ``end``."""

    def __init__(self, clock: ManualClock, end: float, stop: threading.Event) -> None:
        self.clock, self.end, self.stop = clock, end, stop

    def time_ns(self) -> int:
        return self.clock.time_ns()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        if deadline > self.end:
            self.stop.set()
        return self.clock.sleep_until(deadline, stop)


def run_for(loop: TickLoop, clock: ManualClock, seconds: float) -> None:
    stop = threading.Event()
    loop.clock = StopAfter(clock, clock.monotonic() + seconds, stop)
    loop.run(stop)


def test_each_source_is_read_at_its_own_interval() -> None:
    clock = ManualClock()
    gpu, host = CountingSource("gpu", clock), CountingSource("host", clock)
    sink = ListSink()
    loop = TickLoop(
        [Schedule(gpu, 1.0), Schedule(host, 10.0)], sink, clock=clock, encode=simple_encode
    )
    run_for(loop, clock, 29.5)
    assert len(gpu.reads) == 30
    assert len(host.reads) == 3
    assert host.reads[1] - host.reads[0] == 10.0


def test_one_failing_source_does_not_stop_the_others() -> None:
    clock = ManualClock()
    good, bad = CountingSource("good", clock), CountingSource("bad", clock, fail=True)
    sink = ListSink()
    loop = TickLoop(
        [Schedule(good, 1.0), Schedule(bad, 1.0)], sink, clock=clock, encode=simple_encode
    )
    for _ in range(3):
        loop.tick()
        clock.advance(1.0)
    assert len(sink.lines) == 3
    assert loop.stats.source_errors_total == 3
    assert loop.stats.failing_sources == {"bad": "bad is broken"}
    bad.fail = False
    loop.tick()
    assert "bad" not in loop.stats.failing_sources


def test_labels_are_added_but_never_override_a_readings_own_tags() -> None:
    clock = ManualClock()
    sink = ListSink()
    loop = TickLoop(
        [Schedule(CountingSource("gpu", clock), 1.0)],
        sink,
        clock=clock,
        encode=simple_encode,
        labels={"zone": "z1", "host": "configured", "rack": ""},
    )
    loop.tick()
    assert sink.lines[0].startswith(b"gpu,host=n1,zone=z1 ")


def test_unencodable_reading_is_counted_and_the_rest_still_written() -> None:
    clock = ManualClock()
    sink = ListSink()

    def picky(r: Reading) -> bytes:
        if r.measurement == "bad":
            raise EncodeError("no")
        return simple_encode(r)

    loop = TickLoop(
        [Schedule(CountingSource("bad", clock), 1.0), Schedule(CountingSource("ok", clock), 1.0)],
        sink,
        clock=clock,
        encode=picky,
    )
    assert loop.tick() == 1
    assert loop.stats.encode_errors_total == 1


def test_slow_tick_skips_missed_slots_instead_of_bunching() -> None:
    clock = ManualClock()
    source = CountingSource("gpu", clock)
    schedule = Schedule(source, 1.0)
    loop = TickLoop([schedule], ListSink(), clock=clock, encode=simple_encode)
    start = clock.monotonic()
    clock.advance(3.5)  # the previous tick took 3.5 s
    loop.tick()
    assert schedule.next_due == start + 4.0


def test_timestamps_are_taken_at_sampling_time() -> None:
    clock = ManualClock()
    source = CountingSource("gpu", clock)
    sink = ListSink()
    loop = TickLoop([Schedule(source, 1.0)], sink, clock=clock, encode=simple_encode)
    t0 = clock.time_ns()
    loop.tick()
    clock.advance(1.0)
    loop.tick()
    stamps = [int(line.rsplit(b" ", 1)[1]) for line in sink.lines]
    assert stamps == [t0, t0 + 1_000_000_000]
