"""``wattwise demo`` end to end, on a small fleet: agent, store, optimizer, API, report."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.influxd import free_port
from tests.prometheus_peers import VictoriaMetricsServer


def test_demo_records_history_serves_recommendations_and_writes_the_report(
    tmp_path: Path,
) -> None:
    argv = [
        sys.executable, "-m", "wattwise", "demo", "--data-dir", str(tmp_path),
        "--racks", "2", "--nodes-per-rack", "2", "--gpus-per-node", "4",
        "--history", "12", "--duration", "1", "--port", str(free_port()),
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = " ".join(result.stdout.split())  # rich wraps lines
    assert "2 racks × 2 nodes × 4 GPUs = 16 GPUs" in out
    assert "Recorded 12 minutes of history" in out
    assert "Power caps:" in out and "of 16 GPUs to cap" in out
    assert "Cooling setpoints" in out
    assert "Placement of a 1-GPU job" in out or "No node can take a 1-GPU job now" in out
    assert "/v1/recommendations/power-caps" in out
    report = (tmp_path / "report.html").read_text()
    assert "<svg" in report
    assert (tmp_path / "wattwise.sqlite").stat().st_size > 0


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
        argv = [
            sys.executable, "-m", "wattwise", "demo", "--data-dir", str(tmp_path / "demo"),
            "--racks", "2", "--nodes-per-rack", "2", "--gpus-per-node", "2",
            "--history", "12", "--duration", "1", "--port", str(free_port()),
            "--prometheus-url", server.url,
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        found = server.query("count(gpu_power_w)", time.time())
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    out = " ".join(result.stdout.split())
    assert "Recorded 12 minutes of history" in out
    assert "Power caps:" in out and "of 8 GPUs to cap" in out
    assert (
        float(found[0]["value"][1]) == 8
    )  # the agent's line protocol, as VictoriaMetrics names it
    assert not (
        tmp_path / "demo" / "wattwise.sqlite"
    ).exists()  # nothing went to the embedded store
