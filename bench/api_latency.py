"""API latency under 50 concurrent clients, on a simulated 1,000-node fleet.

Run as ``.venv/bin/python bench/api_latency.py`` (``--nodes``, ``--clients``,
``--duration-s``, ``--workers``). The parent fills an embedded store with a few
simulated minutes of the fleet (8 GPUs per node); uvicorn then serves the API
from it (``--workers`` processes, httptools, no access log; each worker refits
and refreshes its own engine once) and the load comes from wrk, a C client
(``apt-get install wrk``): ``-t 2 -c <clients> --latency`` per endpoint, a Lua
script choosing the request. p50/p90/p99 come from wrk's latency distribution.
Without wrk, Python clients (``--requests`` per client and endpoint) measure
instead, and they take CPU from the server. Targets: p99 ≤ 25 ms reading
recommendations, p99 ≤ 50 ms for a placement. Load and server share this machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
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


def fill(nodes: int) -> tuple[Path, int]:
    """A store file holding 8 simulated minutes of ``nodes`` nodes; the time its data ends."""
    from wattwise.agent.lineproto import encode_many
    from wattwise.clock import ManualClock
    from wattwise.collector.sim import FleetSpec, SimFleet
    from wattwise.collector.sim.views import JobView
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
    store.close()
    fleet.close()
    print(f"fleet of {nodes} nodes filled in {time.perf_counter() - started:.1f} s", flush=True)
    return path, clock.time_ns()


def make_app() -> Any:
    """uvicorn's ``--factory``: an engine over the bench store, refreshed once, and its API."""
    from wattwise.clock import ManualClock
    from wattwise.optimizer.service.app import create_app
    from wattwise.optimizer.service.engine import Engine
    from wattwise.optimizer.store import EmbeddedSqliteStore

    store = EmbeddedSqliteStore(Path(os.environ["WATTWISE_BENCH_STORE"]))
    clock = ManualClock(start_ns=int(os.environ["WATTWISE_BENCH_END_NS"]))
    engine = Engine(store, config(), clock)
    started = time.perf_counter()
    engine.refresh()
    print(f"worker {os.getpid()}: refit+refresh {time.perf_counter() - started:.1f} s", flush=True)
    return create_app(engine, engine.config)


def start_server(store: Path, end_ns: int, port: int, workers: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "uvicorn", "--factory", "api_latency:make_app"]
    argv += ["--app-dir", str(Path(__file__).parent), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--http", "httptools", "--no-access-log"]
    argv += ["--log-level", "warning"]
    env = {**os.environ, "WATTWISE_BENCH_STORE": str(store), "WATTWISE_BENCH_END_NS": str(end_ns)}
    return subprocess.Popen(argv, env=env, cwd=Path(__file__).resolve().parents[1])


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


WRK_PERCENTILES = ("50", "90", "99")


def wrk_script(cases: list[Case], think_ms: int = 0) -> str:
    """Lua for wrk: each request one of ``cases`` at random (all share one method and body).

    ``think_ms`` > 0 makes each client wait that long after an answer before its next
    request, as a scheduler or dashboard polling the API does; 0 sends back to back.
    """
    method, _, body = cases[0]
    paths = ", ".join(json.dumps(path) for _, path, _ in cases)
    lines = [f"paths = {{{paths}}}", f'wrk.method = "{method}"']
    if body is not None:
        lines += [f"wrk.body = {json.dumps(body.decode())}"]
        lines += ['wrk.headers["Content-Type"] = "application/json"']
    lines += ["request = function() return wrk.format(nil, paths[math.random(#paths)]) end"]
    if think_ms > 0:
        lines += [f"delay = function() return {think_ms} end"]
    return "\n".join(lines) + "\n"


def run_wrk(
    url: str, cases: list[Case], clients: int, duration_s: int, think_ms: int = 0
) -> dict[str, float]:
    """wrk's latency percentiles (ms) and request rate for ``cases``; raises on any non-2xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(cases, think_ms))
    argv = ["wrk", "-t", "2", "-c", str(clients), "-d", f"{duration_s}s", "--latency"]
    argv += ["-H", f"Authorization: {HEADERS['Authorization']}", "-s", script.name, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    if "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk saw failures:\n{done.stdout}")
    found = {p: _wrk_ms(done.stdout, p) for p in WRK_PERCENTILES}
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    return {**found, "rps": float(rate.group(1)) if rate else float("nan")}


def _wrk_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$", output, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile}% line in wrk's output:\n{output}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[match.group(2)]
    return float(match.group(1)) * scale


def suites(url: str, nodes: int) -> list[tuple[str, list[Case], float]]:
    items = httpx.get(f"{url}/v1/recommendations/power-caps", headers=HEADERS).json()["items"]
    hosts = sorted({i["host"] for i in items})
    by_host: list[Case] = [("GET", f"/v1/recommendations/power-caps?host={h}", None) for h in hosts]
    zone_host: list[Case] = [
        ("GET", f"/v1/recommendations/power-caps?zone=z1&host={h}", None) for h in hosts
    ]
    place = json.dumps({"gpus": 2}).encode()
    return [
        ("GET power-caps ?host=<one of the nodes>", by_host, 25.0),
        ("GET power-caps ?zone=z1&host=<one node>", zone_host, 25.0),
        ("GET cooling (all zones)", [("GET", "/v1/recommendations/cooling", None)], 25.0),
        (f"POST placement (2 GPUs, {nodes} nodes)", [("POST", "/v1/placement", place)], 50.0),
    ]


def wait_until_up(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json().get("ready"):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--duration-s", type=int, default=15, help="wrk run per endpoint")
    parser.add_argument("--requests", type=int, default=40, help="Python fallback only")
    parser.add_argument(
        "--think-ms",
        default="0,100",
        help="comma-separated pauses each client makes between requests (0 = back to back)",
    )
    args = parser.parse_args()
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load: {'wrk' if shutil.which('wrk') else 'Python'}"
    )
    store, end_ns = fill(args.nodes)
    port = free_port()
    server = start_server(store, end_ns, port, args.workers)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, 1800)
        time.sleep(2.0 * args.workers)  # the other workers finish their refresh too
        for name, cases, target in suites(url, args.nodes):
            if shutil.which("wrk"):
                run_wrk(url, cases, 10, 2)  # warm-up
                for think_ms in (int(t) for t in args.think_ms.split(",")):
                    found = run_wrk(url, cases, args.clients, args.duration_s, think_ms)
                    report_wrk(f"{name} (think {think_ms} ms)", found, target)
            else:
                measure(port, cases, 4, 10)  # warm-up
                report(name, measure(port, cases, args.clients, args.requests), target)
    finally:
        server.terminate()
        server.wait(30)


def report_wrk(name: str, found: dict[str, float], target_ms: float) -> None:
    verdict = "meets" if found["99"] <= target_ms else "MISSES"
    print(
        f"{name:<58} {found['rps']:7.0f} req/s  p50 {found['50']:6.1f} ms  "
        f"p90 {found['90']:6.1f} ms  p99 {found['99']:6.1f} ms  ({verdict} p99 ≤ {target_ms:g} ms)",
        flush=True,
    )


if __name__ == "__main__":
    main()
