"""API latency under 50 concurrent clients, on a simulated 1,000-node fleet.

Run as ``.venv/bin/python bench/api_latency.py`` (``--nodes``, ``--clients``,
``--duration-s``, ``--think-ms``, ``--workers``). The parent fills an embedded
store with 8 simulated minutes of the fleet (8 GPUs per node), then:

1. **In-process costs**: the API as the server builds it, called through ASGI
   with no network, one request at a time: median and p99 per read, and a
   placement through the endpoint against the bare ``recommend_placement`` on
   the same requests, interleaved, so their difference is the endpoint's own cost.
2. **Under load**: uvicorn (``--workers`` processes, httptools, asyncio's loop, no access log)
   serves the same API; wrk, a C client (``apt-get install wrk``), keeps
   ``--clients`` connections (``-t 2 --latency``) sending requests chosen at
   random by a Lua script: reads filtered by one of the 1,000 hosts, and
   placements of 1, 2, 4 or 8 GPUs in any zone or one of four, with varied power
   and excluded hosts (no two consecutive requests alike, nothing to cache).
   Each endpoint runs at saturation (think 0 ms: a closed loop, each client
   sends again the moment it is answered), polling (each client waits
   ``--think-ms`` after an answer), and polling while refreshes run on the
   server's thread pool, as the scheduler's do every 5 minutes: back to back,
   or one every ``--refresh-every-s`` (``--modes`` picks among the three).

Targets: p99 ≤ 25 ms reading recommendations, p99 ≤ 50 ms for a placement.
Load generator and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_inprocess import AsgiCaller, placement_overhead, summary_us, time_requests
from wrk_load import Case, run_wrk

from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN, config, free_port

AUTHORIZATION = f"Bearer {READ_TOKEN}"
HEADERS = {"Authorization": AUTHORIZATION}


def fill(nodes: int) -> tuple[Path, int]:
    """A store file holding 8 simulated minutes of ``nodes`` nodes; the time its data ends."""
    from wattwise.clock import ManualClock
    from wattwise.collector.sim import FleetSpec, SimFleet
    from wattwise.collector.sim.views import JobView
    from wattwise.common.lineproto import encode_many
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


def build_engine(store: Path, end_ns: int) -> tuple[Any, Any]:
    """An engine over the bench store and the API the server would build around it."""
    from wattwise.clock import ManualClock
    from wattwise.optimizer.service.engine import Engine
    from wattwise.optimizer.service.metrics import ServiceMetrics
    from wattwise.optimizer.service.server import serving_app
    from wattwise.optimizer.store import EmbeddedSqliteStore

    # A site limit under what the fleet may draw, so that the budget read serves caps.
    nodes = int(os.environ.get("WATTWISE_BENCH_NODES", "1000"))
    budgets = {"budgets.site_w": SITE_SHARE * nodes * NODE_NAMEPLATE_W}
    engine = Engine(EmbeddedSqliteStore(store), config(**budgets), ManualClock(start_ns=end_ns))
    app = serving_app(engine, engine.config, ServiceMetrics())
    started = time.perf_counter()
    engine.refresh()
    print(f"process {os.getpid()}: refit+refresh {time.perf_counter() - started:.1f} s", flush=True)
    plans = engine.snapshot.budget
    capped = len({(c.host, c.gpu) for p in plans for c in p.caps})
    print(f"  budget plans: {sum(p.planned for p in plans)} planned, {capped} GPUs capped")
    return engine, app


def make_app() -> Any:
    """uvicorn's ``--factory``: the API over the bench store, refreshed once."""
    store = Path(os.environ["WATTWISE_BENCH_STORE"])
    return build_engine(store, int(os.environ["WATTWISE_BENCH_END_NS"]))[1]


ROOT = Path(__file__).resolve().parents[1]
NODE_NAMEPLATE_W = (8 * 700 + 1100) / 0.94
"""An 8-H100 node at every limit, with its CPUs, fans and the rest, at the supplies."""
SITE_SHARE = 0.5


def start_server(
    store: Path, end_ns: int, port: int, workers: int, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """uvicorn serving the API of the checkout at ``root`` (its own bench's ``make_app``)."""
    argv = [sys.executable, "-m", "uvicorn", "--factory", "api_latency:make_app"]
    argv += ["--app-dir", str(root / "bench"), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--http", "httptools", "--loop", "asyncio"]
    argv += ["--no-access-log"]
    argv += ["--log-level", "warning"]
    env = {**os.environ, "WATTWISE_BENCH_STORE": str(store), "WATTWISE_BENCH_END_NS": str(end_ns)}
    env["WATTWISE_BENCH_NODES"] = os.environ.get("WATTWISE_BENCH_NODES", "1000")
    return subprocess.Popen(argv, env=env, cwd=root)


def placement_bodies(hosts: list[str], zones: list[str], n: int = 400) -> list[bytes]:
    """``n`` different placement requests: GPU count, zone, stated power, excluded hosts."""
    rng = random.Random(7)
    bodies = []
    for _ in range(n):
        body: dict[str, object] = {"gpus": rng.choice((1, 2, 4, 8))}
        if rng.random() < 0.75:
            body["zone"] = rng.choice(zones)
        if rng.random() < 0.5:
            body["expected_power_w"] = rng.choice((300, 450, 550, 650))
        if rng.random() < 0.3:
            body["exclude_hosts"] = rng.sample(hosts, 3)
        bodies.append(json.dumps(body).encode())
    return bodies


def suites(hosts: list[str], zones: list[str], nodes: int) -> list[tuple[str, list[Case], float]]:
    by_host: list[Case] = [("GET", f"/v1/recommendations/power-caps?host={h}", b"") for h in hosts]
    zone_host: list[Case] = [
        ("GET", f"/v1/recommendations/power-caps?zone={zones[0]}&host={h}", b"") for h in hosts
    ]
    budget: list[Case] = [("GET", f"/v1/recommendations/power-budget?host={h}", b"") for h in hosts]
    place: list[Case] = [("POST", "/v1/placement", b) for b in placement_bodies(hosts, zones)]
    return [
        ("GET power-caps ?host=<one of the nodes>", by_host, 25.0),
        ("GET power-budget ?host=<one of the nodes>", budget, 25.0),
        ("GET power-caps ?zone=&host=<one node>", zone_host, 25.0),
        ("GET cooling (all zones)", [("GET", "/v1/recommendations/cooling", b"")], 25.0),
        (f"POST placement (varied, {nodes} nodes)", place, 50.0),
    ]


def fleet_names(engine: Any) -> tuple[list[str], list[str]]:
    snapshot = engine.snapshot
    return sorted({g.host for g in snapshot.gpus}), sorted({z.zone for z in snapshot.zones})


def in_process(store: Path, end_ns: int, nodes: int) -> tuple[list[str], list[str]]:
    """Print what each request costs inside the process; return the fleet's hosts and zones."""
    engine, app = build_engine(store, end_ns)
    hosts, zones = fleet_names(engine)
    call = AsgiCaller(app, AUTHORIZATION)
    print("\nin-process, one request at a time (µs):")
    *reads, (_, placements, _) = suites(hosts, zones, nodes)
    for name, cases, _ in reads:
        p50, p99 = summary_us(time_requests(call, cases, 5000))
        print(f"  {name:<44} median {p50:7.0f}  p99 {p99:7.0f}")
    endpoint, bare = placement_overhead(call, engine, [body for _, _, body in placements], 2000)
    (e50, e99), (b50, b99) = summary_us(endpoint), summary_us(bare)
    print(f"  {'POST placement, endpoint':<44} median {e50:7.0f}  p99 {e99:7.0f}")
    print(f"  {'  recommend_placement alone':<44} median {b50:7.0f}  p99 {b99:7.0f}")
    print(f"  {'  endpoint overhead (difference)':<44} median {e50 - b50:7.0f}  ({e50 / b50:.2f}×)")
    del engine, app, call
    gc.collect()
    return hosts, zones


class RefreshLoop:
    """Refreshes the server's recommendations (admin API) while it runs: back to back, or
    one starting every ``every_s`` (the scheduler's interval, shortened to fit a run)."""

    def __init__(self, url: str, running: bool = True, every_s: float = 0.0) -> None:
        self.url = url
        self.running = running
        self.every_s = every_s
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RefreshLoop:
        if self.running:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.running:
            self._thread.join(600)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        while not self._stop.is_set():
            started = time.monotonic()
            httpx.post(f"{self.url}/v1/refresh", headers=headers, timeout=600).raise_for_status()
            self.done += 1
            self._stop.wait(max(self.every_s - (time.monotonic() - started), 0.0))


def under_load(
    servers: dict[str, str], cases: list[Case], args: argparse.Namespace, name: str, target: float
) -> None:
    """Each mode against each server in turn, so a comparison shares the machine's state."""
    for url in servers.values():
        run_wrk(url, cases, 10, 2, 0, AUTHORIZATION)  # warm-up
    modes = {"saturation": (0, False), "polling": (args.think_ms, False)}
    modes["refreshing"] = (args.think_ms, True)
    for think_ms, refreshing in (modes[m] for m in args.modes.split(",")):
        for label, url in servers.items():
            with RefreshLoop(url, refreshing, args.refresh_every_s) as refreshes:
                found = run_wrk(url, cases, args.clients, args.duration_s, think_ms, AUTHORIZATION)
            mode = f"think {think_ms} ms" + (f", {refreshes.done} refreshes" if refreshing else "")
            report_wrk(f"{name}{label}", mode, found, target)
            if think_ms == 0:
                print(
                    f"{'':<46}Little's law: {args.clients} clients ÷ {found['rps']:.0f}/s = "
                    f"{1e3 * args.clients / found['rps']:.1f} ms in the system per request"
                )


def report_wrk(name: str, mode: str, found: dict[str, float], target_ms: float) -> None:
    verdict = "meets" if found["99"] <= target_ms else "MISSES"
    print(
        f"{name:<44} {mode:<30} {found['rps']:6.0f} req/s  p50 {found['50']:6.1f} ms  "
        f"p90 {found['90']:6.1f} ms  p99 {found['99']:6.1f} ms  ({verdict} p99 ≤ {target_ms:g} ms)",
        flush=True,
    )


def gc_pauses(url: str) -> str:
    """The server's collections so far, per generation, from its /metrics."""
    text = httpx.get(f"{url}/metrics", headers=HEADERS).text
    found = re.findall(
        r'^wattwise_api_gc_pause_seconds_(count|sum)\{generation="(\d)"\} ([0-9.e+-]+)$', text, re.M
    )
    totals: dict[str, dict[str, float]] = {}
    for kind, generation, value in found:
        totals.setdefault(generation, {})[kind] = float(value)
    return ", ".join(
        f"gen {g}: {int(t['count'])} passes, mean {1e3 * t['sum'] / max(t['count'], 1):.2f} ms"
        for g, t in sorted(totals.items())
    )


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
    parser.add_argument("--duration-s", type=int, default=10, help="wrk run per case")
    parser.add_argument("--think-ms", type=int, default=100, help="pause of a polling client")
    parser.add_argument("--only", default="", help="run only the cases whose name has this")
    parser.add_argument(
        "--modes",
        default="saturation,polling,refreshing",
        help="comma-separated: saturation (think 0), polling (--think-ms), refreshing (polling "
        "while refreshes run)",
    )
    parser.add_argument(
        "--refresh-every-s",
        type=float,
        default=0.0,
        help="in the refreshing mode, start a refresh this often (0: back to back)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/before <commit>`) served beside "
        "this one: every case runs against both, one after the other",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("this benchmark needs wrk (apt-get install wrk)")
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.2f}"
    )
    os.environ["WATTWISE_BENCH_NODES"] = str(args.nodes)
    store, end_ns = fill(args.nodes)
    hosts, zones = in_process(store, end_ns, args.nodes)
    roots = {"": ROOT, **({" [baseline]": args.baseline.resolve()} if args.baseline else {})}
    servers, processes = {}, []
    try:
        for label, root in roots.items():
            port = free_port()
            processes.append(start_server(store, end_ns, port, args.workers, root))
            servers[label] = f"http://127.0.0.1:{port}"
            wait_until_up(servers[label], 1800)
        time.sleep(2.0 * args.workers)  # the other workers finish their refresh too
        print(f"\nunder load: {args.clients} clients, wrk -t 2, {args.duration_s} s per case")
        for name, cases, target in suites(hosts, zones, args.nodes):
            if args.only in name:
                under_load(servers, cases, args, name, target)
        print(f"server's collections: {gc_pauses(servers[''])}")
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
