"""Backlog drain: how fast a 10-minute outage's backlog reaches a real influxd.

Run as ``.venv/bin/python bench/backlog_drain.py``. The backlog is made by the
agent's own path: the tick loop reads a simulated fleet (default 8 nodes × 8
GPUs = 64 GPUs) at 1 Hz for 600 simulated seconds into a fresh WAL, host and
cooling readings every 10 s, exactly as during an outage. Then a fresh
``influxd`` (Debian's influxdb) starts and the sender drains the WAL; the time
from the first request to an empty WAL is measured, and every point is
counted in the database. Repeated; medians reported. Target: ≥ 20× real time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.influxd import InfluxServer
from wattwise.agent.loop import Schedule, TickLoop
from wattwise.agent.sender import Sender
from wattwise.agent.wal import Wal
from wattwise.clock import ManualClock, SystemClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.influx import InfluxTransport
from wattwise.common.lineproto import encode


def make_backlog(wal_dir: Path, nodes: int, gpus_per_node: int, outage_s: int) -> int:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(nodes, gpus_per_node, racks=2, seed=1), clock)
    wal = Wal(wal_dir, max_bytes=1 << 30, sync="interval", clock=SystemClock())
    loop = TickLoop(
        [Schedule(fleet.gpu_source(), 1.0), Schedule(fleet.node_source(), 10.0)],
        wal,
        clock=clock,
        encode=encode,
    )
    lines = 0
    for _ in range(outage_s):
        lines += loop.tick()
        clock.advance(1.0)
    wal.close()
    return lines


def drain_once(root: Path, nodes: int, gpus_per_node: int, outage_s: int) -> tuple[int, float]:
    lines = make_backlog(root / "wal", nodes, gpus_per_node, outage_s)
    (root / "influxd").mkdir()
    server = InfluxServer(root / "influxd")
    server.start()
    try:
        server.create_database("drain")
        wal = Wal(root / "wal", max_bytes=1 << 30, sync="interval", clock=SystemClock())
        transport = InfluxTransport(server.url, database="drain")
        sender = Sender(
            wal, transport, clock=SystemClock(), dead_letter_dir=root / "dl", rng=random.Random(1)
        )
        started = time.perf_counter()
        if not sender.flush(timeout_s=600):
            raise RuntimeError("the backlog did not drain within 600 s")
        elapsed_s = time.perf_counter() - started
        stored = sum(
            int(str(row["count"])) for row in server.rows("SELECT COUNT(power_w) FROM gpu", "drain")
        )
        expected_gpu = outage_s * nodes * gpus_per_node
        if stored != expected_gpu:
            raise RuntimeError(f"{stored} GPU points stored, {expected_gpu} expected")
        transport.close()
        wal.close()
        return lines, elapsed_s
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--outage-s", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(drain_once(Path(tmp), args.nodes, args.gpus_per_node, args.outage_s))
    lines = results[0][0]
    drain_s = statistics.median(r[1] for r in results)
    gpus = args.nodes * args.gpus_per_node
    print(f"backlog: {args.outage_s} s outage, {gpus} GPUs at 1 Hz, {lines} lines")
    print("drain times (s): " + ", ".join(f"{r[1]:.2f}" for r in results))
    print(f"median drain {drain_s:.2f} s = {lines / drain_s:,.0f} lines/s")
    print(f"speed-up over real time: {args.outage_s / drain_s:.0f}x (target >= 20x)")
    return 0 if args.outage_s / drain_s >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
