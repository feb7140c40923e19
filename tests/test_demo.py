"""``wattwise demo`` end to end, on a small fleet: agent, store, optimizer, API, report."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.influxd import InfluxServer, free_port
from tests.prometheus_peers import VictoriaMetricsServer
from wattwise import demo as demo_module
from wattwise.cli import main
from wattwise.collector.sim import FleetSpec, SimFleet

SMALL = ("--racks", "2", "--nodes-per-rack", "2", "--gpus-per-node", "4", "--history", "12")


def run_demo(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "wattwise", "demo", "--data-dir", str(data_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def numbers(stdout: str) -> str:
    """The output from the fleet on, without what differs by design: the API token."""
    from_fleet = stdout[stdout.index("Simulated fleet") :]
    return re.sub(r"(token: |Bearer )\S+", r"\1…", from_fleet)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_demo_twice_starts_clean_and_prints_the_same_numbers(tmp_path: Path) -> None:
    # Regression: a second run wrote a different simulated past into the same series
    # (12 samples a minute), recommended 0 caps and reported more GPU than node energy.
    args = (*SMALL, "--duration", "0.5", "--port", str(free_port()))
    first = run_demo(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_demo(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Starting clean: removed the previous run's" in second.stdout
    assert "Starting clean" not in first.stdout
    assert numbers(first.stdout) == numbers(second.stdout)
    out = " ".join(second.stdout.split())  # rich wraps lines
    assert "16 GPUs (2 racks × 2 nodes × 4), 2 cooling zones, seed 7" in out
    assert "Recorded 12 minutes of history (1,965 lines delivered)" in out
    assert re.search(r"\d+ of 16 GPUs to change: their jobs use [\d.–]+ % less energy", out)
    assert "Cooling setpoints" in out
    assert "sbatch --nodelist=sim-r" in second.stdout or "No node can take" in out
    assert "/docs" not in out  # the API serves no docs page
    assert "<svg" in (tmp_path / "report.html").read_text()
    # One flag points the other commands at the demo's data, using the kept models.
    config = tmp_path / "optimizer.toml"
    caps = subprocess.run(
        [sys.executable, "-m", "wattwise", "recommend", "caps", "--config", str(config)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert caps.returncode == 0, caps.stderr
    assert f"Using the models kept in {tmp_path / 'models'}" in caps.stderr
    assert "of 16 GPUs to change" in caps.stdout


def test_demo_prints_the_api_token_before_the_recommendations(tmp_path: Path) -> None:
    done = run_demo(
        tmp_path, *SMALL, "--history", "6", "--duration", "0.1", "--port", str(free_port())
    )
    assert done.returncode == 0, done.stderr[-3000:]
    api = done.stdout.index("token: ")
    assert api < done.stdout.index("Power caps") < done.stdout.index("Report:")
    # The command to copy is on one line of its own, never wrapped.
    assert re.search(r"^  curl -H 'Authorization: Bearer \S+' http://\S+$", done.stdout, re.M)


def test_demo_with_its_port_taken_exits_2_in_one_line_before_writing_anything(
    tmp_path: Path, taken_port: int
) -> None:
    # Regression: a 40-line traceback after 30 s, then the agent thread kept it alive.
    done = run_demo(tmp_path / "data", "--port", str(taken_port))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"--port: {taken_port} cannot be listened on (" in line and "free port" in line
    assert not (tmp_path / "data").exists()


def test_demo_losing_its_port_after_the_check_leaves_no_thread_behind(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port is taken between the check and the API's start: the demo still ends, with
    # exit 2, and stops the agent it had started.
    monkeypatch.setattr(demo_module, "_check_port_free", lambda port: None)
    before = set(threading.enumerate())
    args = [*SMALL, "--history", "3", "--port", str(taken_port)]
    code = main(["demo", "--data-dir", str(tmp_path), *args])
    assert code == 2
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == []


@pytest.mark.influx
def test_demo_creates_the_database_on_a_new_influxdb(tmp_path: Path, influxd: InfluxServer) -> None:
    # Regression: on an InfluxDB without the database the agent delivered 0 lines and
    # retried "database not found" forever.
    args = ("--influx-url", influxd.url, "--influx-db", "fresh_demo", "--duration", "0.1")
    done = run_demo(tmp_path, *SMALL, "--history", "6", "--port", str(free_port()), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "database 'fresh_demo' ready" in " ".join(done.stdout.split())
    rows = influxd.rows('SELECT COUNT("power_w") FROM "gpu"', "fresh_demo")
    assert int(str(rows[0]["count"])) >= 16 * 6 * 6  # 16 GPUs, 6 samples a minute, 6 minutes


def test_demo_with_a_rack_too_full_to_cool_exits_2_naming_the_option(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "wattwise", "demo", "--data-dir", str(tmp_path)]
    result = subprocess.run(
        [*argv, "--nodes-per-rack", "65"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--nodes-per-rack" in result.stderr and "less than or equal to 64" in result.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_demo_records_into_victoriametrics_and_serves_from_it(tmp_path: Path) -> None:
    (tmp_path / "vm").mkdir()
    server = VictoriaMetricsServer(tmp_path / "vm")
    server.start()
    try:
        args = ("--racks", "2", "--nodes-per-rack", "2", "--gpus-per-node", "2", "--history", "12")
        port = str(free_port())
        done = run_demo(tmp_path / "demo", *args, "--duration", "1", "--port", port,
                        "--prometheus-url", server.url)  # fmt: skip
        found = server.query("count(gpu_power_w)", time.time())
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    assert "Recorded 12 minutes of history" in out
    assert re.search(r"\d+ of 8 GPUs to change", out)
    # the agent's line protocol, named as VictoriaMetrics names it; none went elsewhere
    assert float(found[0]["value"][1]) == 8
    assert not (tmp_path / "demo" / "wattwise.sqlite").exists()


def test_demo_records_the_minutes_its_fitting_took_so_live_samples_follow_without_a_hole(
    tmp_path: Path,
) -> None:
    """Regression: the past ended on a whole minute, the models took a while to fit, and the
    first live sample could land a bucket later; the missing minute read as every GPU's
    work having changed, and `recommend caps` on the demo's data right after said
    "235 × only 1 busy sample of the 5 needed"."""
    behind_s = 150.0
    clock = demo_module.CatchUpClock(time.time_ns() - int(behind_s * 1e9))
    spec = FleetSpec.uniform(1, 2, seed=1)
    fleet = SimFleet(spec, clock)
    runtime = demo_module._agent(fleet, clock, tmp_path, None, "wattwise")
    try:
        demo_module._catch_up(runtime, clock)
        lag_s = (time.time_ns() - clock.time_ns()) / 1e9
        delivered = runtime.sender.stats().sent_lines_total
    finally:
        runtime.shutdown()
        fleet.close()
    assert 0.0 <= lag_s < demo_module.HISTORY_STEP_S
    # every 10 s step of the 150 s was read and delivered (2 GPUs each)
    assert delivered >= 2 * behind_s / demo_module.HISTORY_STEP_S
