"""``wattwise demo``: a simulated fleet, the agent and the embedded store, shown live."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from wattwise.agent.config import load_config
from wattwise.agent.embedded import EmbeddedStore
from wattwise.agent.lineproto import ParsedLine
from wattwise.agent.runtime import AgentRuntime


def demo(
    data_dir: Annotated[Path, typer.Option(help="where the store and WAL go")] = Path("demo-data"),
    nodes: Annotated[int, typer.Option(help="simulated nodes")] = 8,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node")] = 8,
    racks: Annotated[int, typer.Option(help="racks")] = 2,
    seed: Annotated[int, typer.Option(help="simulation seed")] = 7,
    duration_s: Annotated[
        float, typer.Option("--duration", help="seconds to run; 0 = until Ctrl-C")
    ] = 30.0,
) -> None:
    """Run the agent on a simulated fleet into the embedded store and show what it writes."""
    config = load_config(
        None,
        {
            "agent.source": "sim",
            "agent.host": "demo-agent",
            "agent.sim.nodes": nodes,
            "agent.sim.gpus_per_node": gpus_per_node,
            "agent.sim.racks": racks,
            "agent.sim.seed": seed,
            "agent.host_interval_s": 5.0,
            "store.kind": "embedded",
            "store.embedded_path": data_dir / "wattwise.sqlite",
            "wal.dir": data_dir / "wal",
        },
    )
    runtime = AgentRuntime.from_config(config, environ={})
    assert isinstance(runtime.transport, EmbeddedStore)
    store = runtime.transport
    stop = threading.Event()
    agent = threading.Thread(target=runtime.run, args=(stop,), name="wattwise-agent")
    agent.start()
    deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    try:
        with Live(_view(store, runtime), refresh_per_second=2) as live:
            while time.monotonic() < deadline and agent.is_alive():
                time.sleep(1.0)
                live.update(_view(store, runtime))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        agent.join()
    finished = EmbeddedStore(config.store.embedded_path)  # the agent closed its own handle
    try:
        gpu_samples = finished.count("gpu", "power_w")
    finally:
        finished.close()
    print(f"\nThe samples are in {config.store.embedded_path} ({gpu_samples} GPU samples).")


def _view(store: EmbeddedStore, runtime: AgentRuntime) -> Group:
    return Group(_node_table(store.latest("gpu"), store.latest("host")), _agent_table(runtime))


def _node_table(gpus: list[ParsedLine], hosts: list[ParsedLine]) -> Table:
    table = Table(title="Latest samples in the embedded store, per node")
    for column in ("host", "rack", "GPUs", "GPU power W", "hottest GPU °C", "capped", "inlet °C"):
        table.add_column(column, justify="right" if column != "host" else "left")
    inlet = {h.tags.get("host"): h.fields.get("inlet_temp_c") for h in hosts}
    per_host: dict[str, list[ParsedLine]] = {}
    for line in gpus:
        per_host.setdefault(line.tags.get("host", "?"), []).append(line)
    for host, lines in sorted(per_host.items()):
        power = sum(float(line.fields.get("power_w", 0.0)) for line in lines)
        hottest = max(float(line.fields.get("temp_c", 0.0)) for line in lines)
        capped = sum(1 for line in lines if int(line.fields.get("clock_event_reasons", 0)) & 0x4)
        inlet_c = inlet.get(host)
        table.add_row(
            host,
            lines[0].tags.get("rack", ""),
            str(len(lines)),
            f"{power:,.0f}",
            f"{hottest:.1f}",
            str(capped),
            "—" if inlet_c is None else f"{float(inlet_c):.1f}",
        )
    return table


def _agent_table(runtime: AgentRuntime) -> Table:
    s = runtime.stats.snapshot()
    table = Table(title="Agent")
    for column in ("WAL lines", "sent", "retried", "dropped", "dead-lettered", "tick ms"):
        table.add_column(column, justify="right")
    table.add_row(
        str(s.queue_lines),
        str(s.sent_lines_total),
        str(s.retried_batches_total),
        str(s.dropped_lines_total),
        str(s.dead_lettered_lines_total),
        f"{s.tick_duration_s * 1000:.1f}",
    )
    return table
