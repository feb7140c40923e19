"""The running agent's parts together: its sender thread's health and what it exports."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from tests.influxd import free_port
from wattwise.agent.loop import Schedule
from wattwise.agent.runtime import AgentRuntime
from wattwise.agent.wal import Wal
from wattwise.clock import SystemClock
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.errors import AgentError


class Ticks:
    """A source of one ``gpu`` reading per read (the hardware boundary), optionally with a
    field the encoder must refuse."""

    name = "ticks"

    def __init__(self, *, bad_field: bool = False) -> None:
        self.bad_field = bad_field
        self.clock = SystemClock()

    def read(self) -> Sequence[Reading]:
        fields: dict[str, float | None] = {"power_w": 300.0}
        if self.bad_field:
            fields = {"time": 1.0}  # InfluxDB reserves it: never encodable
        return [Reading("gpu", {"host": "n1", "gpu": "0"}, fields, self.clock.time_ns())]

    def close(self) -> None:
        pass


class EndsTheThread:
    """The embedded store, but the first write ends the calling thread the way a stray
    ``sys.exit()`` in a library would: no exception handler sees it."""

    name = "ends-the-thread"

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner

    def write(self, lines: Sequence[bytes]) -> None:
        raise SystemExit(0)

    def close(self) -> None:
        self.inner.close()


def runtime(tmp_path: Path, source: Ticks, transport: object, **kw: int) -> AgentRuntime:
    clock = SystemClock()
    wal = Wal(tmp_path / "wal", max_bytes=1 << 24, sync="none", clock=clock)
    return AgentRuntime(
        [Schedule(source, 0.1)],
        wal,
        transport,  # type: ignore[arg-type]
        host="n1",
        clock=clock,
        dead_letter_dir=tmp_path / "dead",
        self_metrics_interval_s=0.1,
        request_timeout_s=1.0,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_agent_whose_sender_thread_ended_stops_with_an_error_for_its_unit_to_restart(
    tmp_path: Path,
) -> None:
    agent = runtime(tmp_path, Ticks(), EndsTheThread(EmbeddedStore(tmp_path / "e.sqlite")))
    stop = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            agent.run(stop)
        except AgentError as e:
            raised.append(e)

    ran = threading.Thread(target=run)
    ran.start()
    ran.join(timeout=60)
    assert not ran.is_alive() and stop.is_set()  # the agent stopped itself
    assert raised and "sender thread ended" in str(raised[0])
    assert agent.sender_failure is not None
    assert agent.stats.snapshot().sender_up == 0


def test_encode_errors_are_counted_and_exported_on_metrics(tmp_path: Path) -> None:
    port = free_port()
    agent = runtime(
        tmp_path, Ticks(bad_field=True), EmbeddedStore(tmp_path / "e.sqlite"), prometheus_port=port
    )
    stop = threading.Event()
    ran = threading.Thread(target=agent.run, args=(stop,))
    ran.start()
    try:
        exported = 0.0
        deadline = time.monotonic() + 30
        while exported < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            for line in text.splitlines():
                if line.startswith("wattwise_agent_encode_errors_total "):
                    exported = float(line.split()[1])
    finally:
        stop.set()
        ran.join(timeout=60)
    assert exported >= 3
    assert "wattwise_agent_sender_up 1.0" in text
    stored = EmbeddedStore(tmp_path / "e.sqlite").latest("agent")
    assert stored and int(stored[-1].fields["encode_errors_total"]) >= 1
