"""API latency under 50 concurrent clients, on a simulated 1,000-node fleet.

Run as ``.venv/bin/python bench/api_latency.py`` (``--nodes``, ``--clients``,
``--requests`` to change the load). A child process fills an embedded store
with a few simulated minutes of the fleet (8 GPUs per node), refits and
refreshes the engine once, and serves the API with uvicorn (one process, as
``wattwise optimizer serve`` runs it). The parent runs ``--clients`` concurrent
keep-alive connections (spread over processes), each sending ``--requests``
requests back to back per endpoint (a closed loop: no think time), and prints
p50/p99 per endpoint. Targets: p99 ≤ 25 ms for reading recommendations, p99 ≤ 50 ms
for a placement on a 1,000-node fleet. Clients and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.optimizer.service.support import READ_TOKEN, config, free_port

HEADERS = {"Authorization": f"Bearer {READ_TOKEN}"}
Case = tuple[str, str, bytes | None]
"""Method, path and body of one request."""


def build_and_serve(nodes: int, port: int, ready: Any) -> None:
    import uvicorn

    from wattwise.agent.lineproto import encode_many
    from wattwise.clock import ManualClock
    from wattwise.collector.sim import FleetSpec, SimFleet
    from wattwise.collector.sim.views import JobView
    from wattwise.optimizer.service.app import create_app
    from wattwise.optimizer.service.engine import Engine
    from wattwise.optimizer.store import EmbeddedSqliteStore

    path = Path(tempfile.mkdtemp()) / "wattwise.sqlite"
    clock = ManualClock(start_ns=1_700_000_040 * 1_000_000_000)
    spec = FleetSpec.uniform(nodes, 8, racks=max(1, nodes // 16), zones=4, seed=5, busy_share=0.6)
    fleet = SimFleet(spec, clock)
    jobs = JobView(fleet)
    store = EmbeddedSqliteStore(path)
    started = time.perf_counter()
    for _ in range(16):  # 8 simulated minutes read every 30 s
        clock.advance(30.0)
        store.write(encode_many([*fleet.read(), *jobs.read()]))
    filled = time.perf_counter()
    engine = Engine(store, config(), clock)
    engine.refresh()
    app = create_app(engine, engine.config)
    print(
        f"server: fleet filled in {filled - started:.1f} s, refit+refresh "
        f"{time.perf_counter() - filled:.1f} s, {len(engine.snapshot.caps)} GPUs",
        flush=True,
    )
    ready.set()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def client_process(port: int, cases: list[Case], threads: int, requests: int, out: Any) -> None:
    """``threads`` keep-alive connections, each sending ``requests`` of the given cases."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {**HEADERS, "Content-Type": "application/json"}
        mine = []
        for _ in range(requests):
            method, path, body = rng.choice(cases)
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(latencies)


def measure(port: int, cases: list[Case], clients: int, requests: int) -> list[float]:
    """``clients`` concurrent connections spread over processes, so the load generator's own
    GIL does not queue requests the server has already answered."""
    processes = min(clients, max(2, (os.cpu_count() or 2)))
    out: Any = multiprocessing.Queue()
    share = [clients // processes + (i < clients % processes) for i in range(processes)]
    procs = [
        multiprocessing.Process(target=client_process, args=(port, cases, n, requests, out))
        for n in share
        if n
    ]
    for p in procs:
        p.start()
    latencies = [x for _ in procs for x in out.get()]
    for p in procs:
        p.join()
    return latencies


def report(name: str, latencies: list[float], target_ms: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3
    verdict = "meets" if p99 <= target_ms else "MISSES"
    print(
        f"{name:<44} n={len(ordered):>5}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
        f"({verdict} p99 ≤ {target_ms:g} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="per client and endpoint")
    args = parser.parse_args()
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=build_and_serve, args=(args.nodes, port, ready))
    server.start()
    try:
        if not ready.wait(1800):
            raise RuntimeError("the server did not come up")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        run_all(port, args)
    finally:
        server.terminate()
        server.join(10)


def run_all(port: int, args: argparse.Namespace) -> None:
    url = f"http://127.0.0.1:{port}"
    items = httpx.get(f"{url}/v1/recommendations/power-caps", headers=HEADERS).json()["items"]
    hosts = sorted({i["host"] for i in items})
    by_host: list[Case] = [("GET", f"/v1/recommendations/power-caps?host={h}", None) for h in hosts]
    zone_host: list[Case] = [
        ("GET", f"/v1/recommendations/power-caps?zone=z1&host={h}", None) for h in hosts
    ]
    place = json.dumps({"gpus": 2}).encode()
    suites: list[tuple[str, list[Case], float]] = [
        ("GET power-caps ?host=<one of the nodes>", by_host, 25.0),
        ("GET power-caps ?zone=z1&host=<one node>", zone_host, 25.0),
        ("GET cooling (all zones)", [("GET", "/v1/recommendations/cooling", None)], 25.0),
        (f"POST placement (2 GPUs, {args.nodes} nodes)", [("POST", "/v1/placement", place)], 50.0),
    ]
    for name, cases, target in suites:
        measure(port, cases, 4, 10)  # warm-up
        report(name, measure(port, cases, args.clients, args.requests), target)


if __name__ == "__main__":
    main()
