from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.influxd import free_port
from wattwise.clock import ManualClock, SystemClock
from wattwise.collector.base import Source
from wattwise.collector.bmc import BmcSource, BmcValues
from wattwise.collector.ipmi import IpmiBackend, parse_sdr, run_command
from wattwise.collector.redfish import RedfishBackend
from wattwise.errors import SourceError, SourceUnavailable

FIXTURES = Path(__file__).parent / "fixtures"


def test_redfish_reads_intake_and_power_from_sushy_static(
    serve_redfish: Callable[..., str],
) -> None:
    url = serve_redfish("-m", str(FIXTURES / "redfish" / "node"))
    backend = RedfishBackend(base_url=url, username="root", password="calvin", timeout_s=2.0)
    try:
        assert backend.poll() == BmcValues(inlet_temp_c=23.5, node_power_w=2875.0)
        assert backend.poll() == BmcValues(inlet_temp_c=23.5, node_power_w=2875.0)
    finally:
        backend.close()


def test_redfish_disabled_or_null_sensor_and_absent_power_are_missing_not_zero(
    serve_redfish: Callable[..., str],
) -> None:
    url = serve_redfish("-m", str(FIXTURES / "redfish" / "disabled"))
    backend = RedfishBackend(base_url=url, timeout_s=2.0)
    try:
        assert backend.poll() == BmcValues(inlet_temp_c=None, node_power_w=None)
    finally:
        backend.close()


def test_redfish_over_https_verifies_against_the_given_ca(
    serve_redfish: Callable[..., str], self_signed_cert: tuple[Path, Path]
) -> None:
    cert, key = self_signed_cert
    tree = str(FIXTURES / "redfish" / "node")
    url = serve_redfish("-m", tree, "-c", str(cert), "-k", str(key), https=True)
    trusted = RedfishBackend(base_url=url, verify=cert, timeout_s=2.0)
    untrusted = RedfishBackend(base_url=url, verify=True, timeout_s=2.0)
    try:
        assert trusted.poll().node_power_w == 2875.0
        with pytest.raises(SourceUnavailable):
            untrusted.poll()  # a self-signed BMC is refused unless its CA is given
    finally:
        trusted.close()
        untrusted.close()


def test_redfish_sushy_emulator_fake_has_intake_but_no_power(
    serve_redfish: Callable[..., str],
) -> None:
    url = serve_redfish("--fake", program="sushy-emulator")
    backend = RedfishBackend(base_url=url, timeout_s=5.0)
    try:
        assert backend.poll() == BmcValues(inlet_temp_c=25.0, node_power_w=None)
    finally:
        backend.close()


def test_redfish_unreachable_bmc_is_source_unavailable_and_password_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = RedfishBackend(base_url=url, username="root", password="s3cret-pw", timeout_s=1.0)
    source = BmcSource(host="n1", backend=backend, clock=ManualClock(), background=False)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailable) as raised:
        backend.poll()
    with caplog.at_level(logging.DEBUG):
        source.poll_once()
    source.close()
    assert "BMC" in caplog.text
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in str(raised.value) and "s3cret-pw" not in repr(raised.value.__cause__)


class _SilentBmc:
    """A real HTTP server that takes requests and answers none until it is closed."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        closing = self.closing

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                closing.wait(120)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def silent_bmc_url() -> Iterator[str]:
    bmc = _SilentBmc()
    yield bmc.url
    bmc.close()


class _HeldBackend:
    """A backend whose poll is in flight until the test releases it."""

    def __init__(self) -> None:
        self.polling = threading.Event()
        self.release = threading.Event()

    def poll(self) -> BmcValues:
        self.polling.set()
        self.release.wait(120)
        return BmcValues(inlet_temp_c=24.0, node_power_w=None)

    def close(self) -> None:
        self.release.set()


def test_slow_bmc_never_delays_a_tick() -> None:
    backend = _HeldBackend()
    source = BmcSource(host="n1", backend=backend, clock=ManualClock(), interval_s=10.0)
    try:
        assert backend.polling.wait(30)
        # The poll is still in flight: read hands over nothing, and does not wait for it.
        assert source.read() == []
        assert source.read() == []
        assert not backend.release.is_set()
    finally:
        backend.release.set()
        source.close()


def test_redfish_timeout_is_a_source_error(silent_bmc_url: str) -> None:
    # The BMC never answers: only the backend's own timeout can end the poll.
    backend = RedfishBackend(base_url=silent_bmc_url, timeout_s=0.3)
    try:
        with pytest.raises(SourceUnavailable, match="in time"):
            backend.poll()
    finally:
        backend.close()


def test_background_polling_delivers_values_from_a_real_bmc(
    serve_redfish: Callable[..., str],
) -> None:
    url = serve_redfish("-m", str(FIXTURES / "redfish" / "node"))
    clock = SystemClock()
    source = BmcSource(host="n1", backend=RedfishBackend(base_url=url), clock=clock, interval_s=0.1)
    try:
        deadline = time.monotonic() + 10.0
        readings = source.read()
        while not readings and time.monotonic() < deadline:
            time.sleep(0.05)
            readings = source.read()
        [reading] = readings
        assert reading.measurement == "host"
        assert reading.tags == {"host": "n1"}
        assert reading.fields == {"inlet_temp_c": 23.5, "node_power_w": 2875.0}
        assert abs(reading.time_ns - clock.time_ns()) < 5e9
    finally:
        source.close()


class ScriptedBackend:
    """A backend answering from a script: the BMC's answers, or errors."""

    def __init__(self, answers: list[BmcValues | Exception]) -> None:
        self.answers = answers
        self.closed = False

    def poll(self) -> BmcValues:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def test_each_poll_is_written_once_with_its_own_timestamp() -> None:
    clock = ManualClock()
    backend = ScriptedBackend([BmcValues(22.0, 640.0), BmcValues(22.5, None)])
    source = BmcSource(host="n1", backend=backend, clock=clock, background=False)
    assert isinstance(source, Source)
    assert source.name == "bmc"
    polled_ns = clock.time_ns()
    source.poll_once()
    clock.advance(4.0)
    [reading] = source.read()
    assert reading.time_ns == polled_ns
    assert reading.fields == {"inlet_temp_c": 22.0, "node_power_w": 640.0}
    assert source.read() == []  # not written twice
    source.poll_once()
    [reading] = source.read()
    assert reading.fields == {"inlet_temp_c": 22.5, "node_power_w": None}
    source.close()
    assert backend.closed


def test_stale_poll_is_not_written() -> None:
    clock = ManualClock()
    backend = ScriptedBackend([BmcValues(22.0, 640.0)])
    source = BmcSource(
        host="n1",
        backend=backend,
        clock=clock,
        interval_s=10.0,
        stale_after_intervals=3,
        background=False,
    )
    source.poll_once()
    clock.advance(31.0)
    assert source.read() == []


def test_failures_warn_once_and_recovery_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    down = SourceUnavailable("BMC unreachable")
    backend = ScriptedBackend([down, down, down, BmcValues(21.0, None)])
    source = BmcSource(host="n1", backend=backend, clock=clock, background=False)
    with caplog.at_level(logging.INFO, logger="wattwise.collector.bmc"):
        for _ in range(3):
            source.poll_once()
            assert source.read() == []
        source.poll_once()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert source.read()[0].fields["inlet_temp_c"] == 21.0


def test_background_thread_stops_on_close() -> None:
    backend = ScriptedBackend([BmcValues(20.0, 100.0)] * 1000)
    source = BmcSource(host="n1", backend=backend, clock=SystemClock(), interval_s=0.01)
    source.close()
    assert not any(t.name == "wattwise-bmc-n1" for t in threading.enumerate())


# --- IPMI --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("dell_sdr_elist.txt", BmcValues(inlet_temp_c=22.0, node_power_w=644.0)),
        ("dell_sdr_elist_disabled.txt", BmcValues(inlet_temp_c=None, node_power_w=None)),
        ("hpe_sdr_elist.txt", BmcValues(inlet_temp_c=24.0, node_power_w=668.0)),
        ("supermicro_sdr_list.txt", BmcValues(inlet_temp_c=24.5, node_power_w=None)),
    ],
)
def test_parse_sdr_output_of_real_bmcs(fixture: str, expected: BmcValues) -> None:
    assert parse_sdr((FIXTURES / "ipmi" / fixture).read_text()) == expected


def test_ipmi_remote_command_keeps_the_password_off_the_command_line(tmp_path: Path) -> None:
    seen: list[Sequence[str]] = []

    def runner(argv: Sequence[str], timeout_s: float) -> str:
        seen.append(list(argv))
        return (FIXTURES / "ipmi" / "dell_sdr_elist.txt").read_text()

    password_file = tmp_path / "bmc-password"
    password_file.write_text("calvin\n")
    backend = IpmiBackend(
        runner=runner, bmc_host="10.0.0.17", username="root", password_file=password_file
    )
    assert backend.poll() == BmcValues(inlet_temp_c=22.0, node_power_w=644.0)
    assert seen == [
        [
            *("ipmitool", "-I", "lanplus", "-H", "10.0.0.17", "-U", "root"),
            *("-f", str(password_file), "sdr", "elist"),
        ]
    ]
    assert "calvin" not in " ".join(seen[0])


def test_ipmi_runs_a_real_process_and_converts_its_errors(tmp_path: Path) -> None:
    fake_ipmitool = tmp_path / "ipmitool"
    fixture = FIXTURES / "ipmi" / "hpe_sdr_elist.txt"
    fake_ipmitool.write_text(f"#!/bin/sh\ncat '{fixture}'\n")
    fake_ipmitool.chmod(0o755)
    assert IpmiBackend(ipmitool=str(fake_ipmitool)).poll().node_power_w == 668.0

    with pytest.raises(SourceUnavailable):
        IpmiBackend(ipmitool=str(tmp_path / "absent")).poll()
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'Unable to open SDR for reading' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(SourceError, match="Unable to open SDR"):
        IpmiBackend(ipmitool=str(failing)).poll()
    pid_file = tmp_path / "hung.pid"
    with pytest.raises(SourceError, match="did not finish"):
        run_command(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"], timeout_s=0.2)
    with pytest.raises(ProcessLookupError):  # the hung ipmitool was killed, not left behind
        os.kill(int(pid_file.read_text()), 0)
