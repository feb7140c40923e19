"""``wattwise demo``: the whole system on one machine, with no GPU and no InfluxDB.

A simulated fleet is sampled by the agent into the embedded store (or a real
InfluxDB with ``--influx-url``, or a VictoriaMetrics with ``--prometheus-url``: the
agent writes its line protocol to VictoriaMetrics' ``/write`` and the optimizer
reads through the Prometheus query API). To have something to learn from at once, the
agent first records ``--history`` of the fleet's past on a fast clock, through
the same tick loop, WAL and sender as live samples. The optimizer fits its
models on that past and computes the first recommendations as of its end, and
the report is written; then the fleet runs in real time, the API serves on
localhost and the recommendations are fetched from it and printed.

The past starts on a whole minute and the fleet is seeded, so two runs record the
same samples on the same grid and print the same numbers; a run starts from a
clean data directory (the previous run's store, WAL, models and report removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import Progress

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
from wattwise.errors import ConfigError, StoreError
from wattwise.optimizer.report.write import write_report
from wattwise.optimizer.service import printing
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.settings import OptimizerConfig, load_optimizer_config
from wattwise.optimizer.store import InfluxStore, open_store
from wattwise.optimizer.store.initdb import init_db
from wattwise.optimizer.telemetry import Scope

PLACE_GPUS = 1
"""GPUs the demo's example job asks for."""

HISTORY_STEP_S = 10.0
"""Sampling step while recording the past: the optimizer learns from 1-minute aggregates."""

SHOWN_CAPS = 10
"""Power-cap changes printed; ``wattwise recommend caps`` lists them all."""

RUN_FILES = (
    "wattwise.sqlite", "wattwise.sqlite-wal", "wattwise.sqlite-shm", "wal", "dead-letter",
    "models", "report.html", ".report.html.partial", "optimizer.toml",
)  # fmt: skip
"""What a run writes in its data directory, and a new run removes: nothing else there."""


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
    _check_port_free(port)  # before anything is written or started
    spec = FleetSpec.uniform(racks * nodes_per_rack, gpus_per_node, racks=racks, zones=2, seed=seed)
    with _components_quiet():
        _run(spec, data_dir, history_min, duration_s, port, influx_url, influx_db, prometheus_url)


@contextmanager
def _components_quiet() -> Iterator[None]:
    """The demo says what happens itself: the components' INFO lines would only interleave
    (WATTWISE_LOG_LEVEL, when set, keeps them)."""
    components = logging.getLogger("wattwise")
    level = components.level
    if "WATTWISE_LOG_LEVEL" not in os.environ:
        components.setLevel(logging.WARNING)
    try:
        yield
    finally:
        components.setLevel(level)


def _run(
    spec: FleetSpec,
    data_dir: Path,
    history_min: float,
    duration_s: float,
    port: int,
    influx_url: str | None,
    influx_db: str,
    prometheus_url: str | None = None,
) -> None:
    console = Console()
    token = secrets.token_urlsafe(16)
    config = _optimizer_config(
        data_dir, influx_url, influx_db, port, token, history_min, prometheus_url
    )
    if influx_url:
        _prepare_influx(config, console)
    _start_clean(data_dir, console)
    _write_command_config(data_dir, config)
    # On a whole minute: every run samples the same grid, and buckets split it alike.
    start_ns = (time.time_ns() - int(history_min * 60e9)) // 60_000_000_000 * 60_000_000_000
    clock = CatchUpClock(start_ns)
    runtime = _agent(
        SimFleet(spec, clock), clock, data_dir, influx_url or prometheus_url, influx_db
    )
    console.print(f"[bold]Simulated fleet:[/] {_describe(spec)}")
    _record_history(runtime, clock, history_min * 60, console)
    engine = Engine(open_store(config.store, clock), config, clock)
    if prometheus_url:
        _until_searchable(engine, sum(node.gpus for node in spec.nodes))
    _fit_and_report(engine, history_min * 60, data_dir / "report.html", console)
    _catch_up(runtime, clock)
    clock.go_live()
    stop = threading.Event()
    agent = threading.Thread(target=runtime.run, args=(stop,), name="wattwise-agent")
    server: _Server | None = None
    agent.start()
    try:
        server = _serve(engine, config)
        base = f"http://127.0.0.1:{port}"
        _show_api(base, token)
        _show(base, token, console)
        console.print(
            f"\n[bold]Report:[/] {data_dir / 'report.html'}: open it in any browser, "
            "no network needed"
        )
        typer.echo(
            f"The same recommendations from the command line: "
            f"wattwise recommend caps --config {data_dir / 'optimizer.toml'}"
        )
        _wait(duration_s, console)
    finally:
        if server is not None:
            server.stop()
        stop.set()
        agent.join()
        engine.store.close()


def _describe(spec: FleetSpec) -> str:
    racks = len({node.rack for node in spec.nodes})
    per_rack = len(spec.nodes) // racks
    per_node = spec.nodes[0].gpus
    gpus = sum(node.gpus for node in spec.nodes)
    # Short enough for one 80-column line: rich would break "(seed 7)" in two.
    return (
        f"{gpus} GPUs ({racks} racks × {per_rack} nodes × {per_node}), "
        f"{len({node.zone for node in spec.nodes})} cooling zones, seed {spec.seed}"
    )


def _check_port_free(port: int) -> None:
    """Refuse a port something else listens on, in one line, before anything starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise ConfigError(
                "--port",
                port,
                "a free port on 127.0.0.1; --port picks another",
                problem=f"cannot be listened on ({e.strerror})",
            ) from e


def _start_clean(data_dir: Path, console: Console) -> None:
    """Remove what a previous run wrote (and only that), so its past does not mix in."""
    old = [data_dir / name for name in RUN_FILES if (data_dir / name).exists()]
    for path in old:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if old:
        console.print(
            f"Starting clean: removed the previous run's store, write-ahead log, models "
            f"and report from {data_dir}/."
        )
    data_dir.mkdir(parents=True, exist_ok=True)


def _prepare_influx(config: OptimizerConfig, console: Console) -> None:
    """Create the database and its retention policies, as ``wattwise optimizer init-db``."""
    settings = config.store
    store = InfluxStore(settings.url, database=settings.database, clock=SystemClock())
    try:
        init_db(store)
    except StoreError as e:
        raise ConfigError(
            "--influx-url",
            settings.url,
            f"an InfluxDB 1.x where database {settings.database!r} can be created ({e}); "
            f"run `wattwise optimizer init-db --url {settings.url} --database "
            f"{settings.database}` with an admin user first",
        ) from e
    finally:
        store.close()
    console.print(
        f"InfluxDB {settings.url}: database {settings.database!r} ready (retention policies "
        "and downsampling as `wattwise optimizer init-db` makes them). A rerun writes the "
        "same past at the same times over it; --influx-db NAME keeps runs apart."
    )


def _write_command_config(data_dir: Path, config: OptimizerConfig) -> None:
    """``demo-data/optimizer.toml``: one flag points every command at the demo's data."""
    store = config.store
    where = (
        f'kind = "embedded"\nembedded_path = {json.dumps(str(store.embedded_path.absolute()))}'
        if store.kind == "embedded"
        else f'kind = "influx"\nurl = {json.dumps(store.url)}\n'
        f"database = {json.dumps(store.database)}"
    )
    registry = config.models.registry_dir
    assert registry is not None
    (data_dir / "optimizer.toml").write_text(
        "# Written by `wattwise demo`. Every optimizer command reads the demo's data with\n"
        "#   --config demo-data/optimizer.toml\n"
        "# (wattwise recommend caps|cooling|place, wattwise models, wattwise report).\n"
        f"[store]\n{where}\n\n"
        f"[models]\nwindow_s = {config.models.window_s}\n"
        f"registry_dir = {json.dumps(str(registry.absolute()))}\n"
    )


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


def _catch_up(runtime: AgentRuntime, clock: CatchUpClock) -> None:
    """Record the seconds that passed since the past ended (its start was rounded down to a
    minute, and the models took a while to fit), so the live samples follow without a
    hole: a missing minute reads as the GPUs' work having changed, and left every GPU
    one busy sample when a command ran on the demo's data right after."""
    while clock.time_ns() + HISTORY_STEP_S * 1e9 <= time.time_ns():
        runtime.loop.tick()
        clock.advance(HISTORY_STEP_S)
    runtime.sender.flush(timeout_s=600)


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


def _fit_and_report(engine: Engine, history_s: float, out: Path, console: Console) -> None:
    """Fit the models and compute the recommendations as of the past's end, and write the
    report; the API then serves these recommendations until asked to refresh."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("fitting the models", total=1.0)
        write_report(
            engine,
            history_s,
            out,
            lambda step, share: progress.update(task, completed=share, description=step),
        )


class _Server:
    """The API under uvicorn on its own thread, stopped and joined by :meth:`stop`."""

    def __init__(self, engine: Engine, config: OptimizerConfig) -> None:
        app = create_app(engine, config)
        self.port = config.api.port
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self._run, name="wattwise-api", daemon=True)

    def _run(self) -> None:
        # SystemExit is uvicorn's way to fail its start; it has logged why.
        with contextlib.suppress(SystemExit):
            self.uvicorn.run()

    def start(self, timeout_s: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.uvicorn.started:
            if not self.thread.is_alive():  # it could not bind, or failed on its way up
                raise ConfigError(
                    "--port", self.port, "a free port on 127.0.0.1", problem="cannot be listened on"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on port {self.port}")
            self.thread.join(0.05)

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=10)


def _serve(engine: Engine, config: OptimizerConfig) -> _Server:
    server = _Server(engine, config)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def _show_api(base: str, token: str) -> None:
    """Said as soon as the API answers; the curl line unwrapped, to be copied as it is."""
    typer.echo(f"\nAPI: {base} (token: {token}); docs/api.md describes every endpoint:")
    typer.echo(f"  curl -H 'Authorization: Bearer {token}' {base}/v1/recommendations/power-caps")


def _show(base: str, token: str, console: Console) -> None:
    """The first recommendations, fetched over the API like any client would."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
        caps = api.get("/v1/recommendations/power-caps").raise_for_status().json()
        cooling = api.get("/v1/recommendations/cooling").raise_for_status().json()
        place = (
            api.post("/v1/placement?explain=true", json={"gpus": PLACE_GPUS})
            .raise_for_status()
            .json()
        )
    console.print("\n[bold]Power caps[/], the largest savings first")
    printing.print_caps(_items(caps), show_all=False, limit=SHOWN_CAPS, console=console)
    printing.print_cooling(_items(cooling), console=console)
    console.print(f"\n[bold]Placement[/] of a {PLACE_GPUS}-GPU job")
    printing.print_placement(place, PLACE_GPUS, console=console)


def _items(body: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body["items"]
    return items


def _wait(duration_s: float, console: Console) -> None:
    if duration_s <= 0:
        console.print("Serving until Ctrl-C.")
    else:
        console.print(f"Serving for {duration_s:g} s (--duration 0 to keep it running).")
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
