"""Agent overhead: CPU and memory of ``wattwise agent run`` at 1 Hz with 8 simulated GPUs.

Run as ``.venv/bin/python bench/agent_overhead.py [--duration-s 600]``. Starts a
real ``influxd`` and the agent as its own process (simulated node with 8 GPUs,
GPU readings every second, host and cooling every 10 s, delivery to influxd),
lets it warm up for 30 s, then samples the agent's CPU time and RSS every
``--sample-s`` seconds. Reports CPU as a share of one core over the whole run
and per sample window, and RSS at the start and end of the measurement (growth).
Targets: ≤ 1 % of one core, ≤ 80 MB RSS, no growth.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.influxd import InfluxServer

WARMUP_S = 30.0


def agent_command(url: str, wal_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "wattwise", "agent", "run", "--config", os.devnull,
        "--source", "sim", "--sim-nodes", "1", "--sim-gpus-per-node", "8",
        "--interval", "1", "--influx-url", url, "--influx-db", "overhead",
        "--wal-dir", str(wal_dir),
    ]  # fmt: skip


def measure(root: Path, duration_s: float, sample_s: float) -> tuple[dict[str, float], list[float]]:
    (root / "influxd").mkdir()
    server = InfluxServer(root / "influxd")
    server.start()
    server.create_database("overhead")
    agent = subprocess.Popen(
        agent_command(server.url, root / "wal"),
        stdout=subprocess.DEVNULL,
        stderr=open(root / "agent.log", "wb"),  # noqa: SIM115 - owned by the child
    )
    try:
        process = psutil.Process(agent.pid)
        time.sleep(WARMUP_S)
        start_cpu = sum(process.cpu_times()[:2])
        start_wall = time.monotonic()
        rss_mb = [process.memory_info().rss / 1e6]
        window_pct = []
        last_cpu, last_wall = start_cpu, start_wall
        while time.monotonic() - start_wall < duration_s:
            time.sleep(sample_s)
            cpu, wall = sum(process.cpu_times()[:2]), time.monotonic()
            window_pct.append(100 * (cpu - last_cpu) / (wall - last_wall))
            rss_mb.append(process.memory_info().rss / 1e6)
            last_cpu, last_wall = cpu, wall
        total_pct = 100 * (last_cpu - start_cpu) / (last_wall - start_wall)
        points = server.rows("SELECT COUNT(power_w) FROM gpu", "overhead")
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        server.stop()
    return {
        "cpu_pct_of_one_core": total_pct,
        "cpu_pct_window_median": statistics.median(window_pct),
        "cpu_pct_window_max": max(window_pct),
        "rss_mb_start": rss_mb[0],
        "rss_mb_end": rss_mb[-1],
        "rss_mb_max": max(rss_mb),
        "gpu_points_delivered": float(points[0]["count"]) if points else 0.0,  # type: ignore[arg-type]
    }, rss_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--sample-s", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result, rss_mb = measure(Path(tmp), args.duration_s, args.sample_s)
    span = f"{args.duration_s:.0f} s after {WARMUP_S:.0f} s warm-up"
    print(f"agent, 8 simulated GPUs at 1 Hz, {span}")
    for key, value in result.items():
        print(f"  {key}: {value:.2f}")
    print("  rss per sample (MB): " + " ".join(f"{v:.1f}" for v in rss_mb))
    growth_mb = result["rss_mb_end"] - result["rss_mb_start"]
    print(f"  rss growth: {growth_mb:+.2f} MB")
    ok = result["cpu_pct_of_one_core"] <= 1.0 and result["rss_mb_max"] <= 80.0
    print("targets (<= 1 % of one core, <= 80 MB RSS): " + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
