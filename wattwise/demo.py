"""``wattwise demo``: the whole system on one machine, with no GPU and no InfluxDB.

A simulated fleet is sampled by the agent into the embedded store (or a real
InfluxDB with ``--influx-url``, or a VictoriaMetrics with ``--prometheus-url``: the
agent writes its line protocol to VictoriaMetrics' ``/write`` and the optimizer
reads through the Prometheus query API). To have something to learn from at once, the
agent first records ``--history`` of the fleet's past on a fast clock, through
the same tick loop, WAL and sender as live samples; then the fleet runs in real
time. The optimizer fits its models, serves its API on localhost, prints the
first recommendations and what they would save, and writes the HTML report.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from wattwise.agent.config import SenderSettings
from wattwise.agent.loop import Schedule
from wattwise.agent.runtime import AgentRuntime
from wattwise.agent.wal import Wal
from wattwise.clock import ManualClock, SystemClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.spec import MAX_NODES_PER_RACK
from wattwise.collector.sim.views import JobView
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.influx import InfluxTransport
from wattwise.common.transport import Transport
from wattwise.optimizer.report.write import write_report
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.settings import OptimizerConfig, load_optimizer_config
from wattwise.optimizer.store import open_store
from wattwise.optimizer.telemetry import Scope

PLACE_GPUS = 1
"""GPUs the demo's example job asks for."""

HISTORY_STEP_S = 10.0
"""Sampling step while recording the past: the optimizer learns from 1-minute aggregates."""


class CatchUpClock:
    """A manual clock while the past is recorded, then the machine's clock.

    Monotonic time continues where the manual clock stopped, so the fleet's
    physics never jumps; sample timestamps switch to the wall clock.
    """

    def __init__(self, start_ns: int) -> None:
        self._manual: ManualClock | None = ManualClock(start_ns, time.monotonic())
        self._offset_s = 0.0

    def advance(self, seconds: float) -> None:
        assert self._manual is not None, "already live"
        self._manual.advance(seconds)

    def go_live(self) -> None:
        assert self._manual is not None
        self._offset_s = self._manual.monotonic() - time.monotonic()
        self._manual = None

    def time_ns(self) -> int:
        return self._manual.time_ns() if self._manual else time.time_ns()

    def monotonic(self) -> float:
        return self._manual.monotonic() if self._manual else time.monotonic() + self._offset_s

    def sleep_until(self, deadline: float, stop: threading.Event) -> bool:
        if self._manual is not None:
            return self._manual.sleep_until(deadline, stop)
        return stop.wait(max(0.0, deadline - self.monotonic())) or stop.is_set()


def demo(
    data_dir: Annotated[Path, typer.Option(help="where the store, WAL and report go")] = Path(
        "demo-data"
    ),
    racks: Annotated[int, typer.Option(min=2, help="racks (2 cooling zones)")] = 4,
    nodes_per_rack: Annotated[
        int, typer.Option(min=1, max=MAX_NODES_PER_RACK, help="nodes per rack")
    ] = 8,
    gpus_per_node: Annotated[int, typer.Option(min=1, max=16, help="GPUs per node")] = 8,
    seed: Annotated[int, typer.Option(help="simulation seed")] = 7,
    history_min: Annotated[float, typer.Option("--history", help="minutes of past")] = 30.0,
    duration_s: Annotated[
        float, typer.Option("--duration", help="seconds to serve live; 0 = until Ctrl-C")
    ] = 30.0,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1")] = 8470,
    influx_url: Annotated[
        str | None, typer.Option(help="use this InfluxDB 1.x instead of the embedded store")
    ] = None,
    influx_db: Annotated[str, typer.Option(help="database for --influx-url")] = "wattwise",
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="record into this VictoriaMetrics (its /write) and read it back"),
    ] = None,
) -> None:
    """Simulated fleet → agent → store → optimizer and API, with the first recommendations."""
    console = Console()
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = FleetSpec.uniform(racks * nodes_per_rack, gpus_per_node, racks=racks, zones=2, seed=seed)
    clock = CatchUpClock(time.time_ns() - int(history_min * 60e9))
    fleet = SimFleet(spec, clock)
    runtime = _agent(fleet, clock, data_dir, influx_url or prometheus_url, influx_db)
    gpus = racks * nodes_per_rack * gpus_per_node
    console.print(
        f"[bold]Simulated fleet:[/] {racks} racks × {nodes_per_rack} nodes × "
        f"{gpus_per_node} GPUs = {gpus} GPUs in 2 cooling zones (seed {seed})"
    )
    _record_history(runtime, clock, history_min * 60, console)
    clock.go_live()
    stop = threading.Event()
    agent = threading.Thread(target=runtime.run, args=(stop,), name="wattwise-agent")
    agent.start()
    token = secrets.token_urlsafe(16)
    config = _optimizer_config(
        data_dir, influx_url, influx_db, port, token, history_min, prometheus_url
    )
    engine = Engine(open_store(config.store, SystemClock()), config, SystemClock())
    if prometheus_url:
        _until_searchable(engine, gpus)
    _fit(engine, console)
    server = _serve(engine, config)
    try:
        base = f"http://127.0.0.1:{port}"
        _show(console, base, token)
        write_report(engine, history_min * 60, data_dir / "report.html")
        console.print(
            f"\n[bold]Report:[/] {data_dir / 'report.html'}: open it in any browser, "
            "no network needed"
        )
        console.print(
            f"[bold]API:[/] {base}/docs  (token: {token})\n"
            f"  curl -H 'Authorization: Bearer {token}' {base}/v1/recommendations/power-caps"
        )
        _wait(duration_s, console)
    finally:
        server.should_exit = True
        stop.set()
        agent.join()


def _agent(
    fleet: SimFleet, clock: CatchUpClock, data_dir: Path, influx_url: str | None, influx_db: str
) -> AgentRuntime:
    transport: Transport
    if influx_url:
        transport = InfluxTransport(influx_url, database=influx_db)
    else:
        transport = EmbeddedStore(data_dir / "wattwise.sqlite")
    wal = Wal(data_dir / "wal", max_bytes=1 << 30, sync="interval", clock=clock)
    schedules = [
        Schedule(fleet.gpu_source(), 1.0),
        Schedule(fleet.node_source(), 10.0),
        Schedule(JobView(fleet), 30.0),
    ]
    return AgentRuntime(
        schedules, wal, transport, host="demo-agent", clock=clock,
        dead_letter_dir=data_dir / "dead-letter", sender=SenderSettings(),
    )  # fmt: skip


def _record_history(
    runtime: AgentRuntime, clock: CatchUpClock, history_s: float, console: Console
) -> None:
    steps = int(history_s / HISTORY_STEP_S)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recording the fleet's past", total=steps)
        for _ in range(steps):
            runtime.loop.tick()
            clock.advance(HISTORY_STEP_S)
            progress.advance(task)
        task = progress.add_task("delivering it to the store", total=None)
        runtime.sender.flush(timeout_s=600)
    console.print(
        f"Recorded {history_s / 60:.0f} minutes of history "
        f"({runtime.sender.stats().sent_lines_total:,} lines delivered)."
    )


def _optimizer_config(
    data_dir: Path,
    influx_url: str | None,
    influx_db: str,
    port: int,
    token: str,
    history_min: float,
    prometheus_url: str | None = None,
) -> OptimizerConfig:
    store: dict[str, Any] = (
        {"kind": "influx", "url": influx_url, "database": influx_db}
        if influx_url
        else {"kind": "embedded", "embedded_path": str(data_dir / "wattwise.sqlite")}
    )
    if prometheus_url:  # VictoriaMetrics: queried as Prometheus, written as InfluxDB
        store = {"kind": "prometheus", "url": prometheus_url, "write_url": prometheus_url}
    digest = hashlib.sha256(token.encode()).hexdigest()
    return load_optimizer_config(None, {
        "store": store,
        "api.port": port,
        "api.tokens": [{"name": "demo", "sha256": digest, "scopes": ["read", "admin"]}],
        "models.window_s": history_min * 60,
        "models.registry_dir": str(data_dir / "models"),
    })  # fmt: skip


def _until_searchable(engine: Engine, gpus: int, timeout_s: float = 30.0) -> None:
    """VictoriaMetrics makes what it took searchable within a second or so: wait for it,
    or the first refit would find no history."""
    deadline = time.monotonic() + timeout_s
    while len(engine.store.latest_gpus(Scope())) < gpus and time.monotonic() < deadline:
        time.sleep(0.2)


def _fit(engine: Engine, console: Console) -> None:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("fitting the models", total=1.0)
        engine.refit(lambda step, share: progress.update(task, completed=share, description=step))
    engine.refresh()


def _serve(engine: Engine, config: OptimizerConfig) -> uvicorn.Server:
    app = create_app(engine, config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=config.api.port, log_level="warning")
    )
    threading.Thread(target=server.run, name="wattwise-api", daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on port {config.api.port}")
        time.sleep(0.05)
    return server


def _show(console: Console, base: str, token: str) -> None:
    """The first recommendations, fetched over the API like any client would."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
        caps = api.get("/v1/recommendations/power-caps").raise_for_status().json()
        cooling = api.get("/v1/recommendations/cooling").raise_for_status().json()
        place = (
            api.post("/v1/placement?explain=true", json={"gpus": PLACE_GPUS})
            .raise_for_status()
            .json()
        )
    console.print(_caps_table(caps))
    console.print(_cooling_table(cooling))
    candidates = place["candidates"]
    if not candidates:
        console.print(f"\nNo node can take a {PLACE_GPUS}-GPU job now: {place['rejected']}")
        return
    best = candidates[0]
    console.print(
        f"\n[bold]Placement[/] of a {PLACE_GPUS}-GPU job: {best['host']} GPUs {best['gpus']}: "
        f"{best['reason']} ({len(candidates)} candidates)"
    )
    console.print(f"  Slurm: sbatch --nodelist={place['nodelist']} …")


def _items(body: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body["items"]
    return items


def _caps_table(body: Any) -> Table:
    items = _items(body)
    recs = [r for r in items if r.get("recommended_limit_w") is not None]
    saving_w = sum(r["saving_w"] for r in recs)
    reasons = Counter(r["reason"] for r in items if r.get("recommended_limit_w") is None)
    table = Table(
        title=f"Power caps: {len(recs)} of {len(items)} GPUs to cap, saving "
        f"{saving_w / 1000:.1f} kW (≈ {saving_w * 730 / 1e6:.1f} MWh per month)"
    )
    for column in ("host", "GPU", "limit W → recommended", "saving W", "slowdown %", "confidence"):
        table.add_column(column)
    for r in sorted(recs, key=lambda r: -r["saving_w"])[:10]:
        table.add_row(
            r["host"],
            str(r["gpu"]),
            f"{r['current_limit_w']:.0f} → {r['recommended_limit_w']:.0f}",
            f"{r['saving_w']:.0f}",
            f"{r['slowdown_pct']:.1f}",
            f"{r['confidence']:.2f}",
        )
    kept = "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3))
    table.caption = f"Left as they are: {kept}" if kept else None
    return table


def _cooling_table(body: Any) -> Table:
    table = Table(title="Cooling setpoints")
    for column in ("zone", "setpoint °C → recommended", "max inlet °C", "saving W", "why"):
        table.add_column(column)
    for r in _items(body):
        table.add_row(
            r["zone"],
            f"{r['current_setpoint_c']:.1f} → {r['recommended_setpoint_c']:.1f}",
            f"{r['predicted_max_inlet_c']:.1f}" if r["predicted_max_inlet_c"] else "—",
            f"{r['saving_w']:.0f}",
            r["reason"],
        )
    return table


def _wait(duration_s: float, console: Console) -> None:
    if duration_s <= 0:
        console.print("Serving until Ctrl-C.")
    else:
        console.print(f"Serving for {duration_s:.0f} s (--duration 0 to keep it running).")
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
