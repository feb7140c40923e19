"""What the service tests share: a twin-filled embedded store, tokens, and a live uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.views import JobView
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.service.settings import OptimizerConfig, load_optimizer_config
from wattwise.optimizer.store import EmbeddedSqliteStore

START_NS = 1_700_000_040 * 1_000_000_000
READ_TOKEN, ADMIN_TOKEN, EXTENDER_TOKEN = "read-token-1", "admin-token-1", "extender-token-1"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def config(**overrides: object) -> OptimizerConfig:
    tokens = [
        {"name": "reader", "sha256": sha(READ_TOKEN), "scopes": ["read"]},
        {"name": "ops", "sha256": sha(ADMIN_TOKEN), "scopes": ["admin"]},
        {"name": "kube", "sha256": sha(EXTENDER_TOKEN), "scopes": ["extender"]},
    ]
    return load_optimizer_config(
        None,
        {
            "api.tokens": tokens,
            "models.window_s": 3600.0,
            **overrides,
        },
    )


def twin_lines(
    *, nodes: int = 8, gpus: int = 4, minutes: int = 12, seed: int = 11, busy_share: float = 0.5
) -> tuple[list[list[bytes]], ManualClock]:
    """Line protocol of a twin of ``nodes`` nodes (2 racks, 2 zones) read every 10 s, one
    batch per read, and a clock standing at the end of the data."""
    clock = ManualClock(start_ns=START_NS)
    spec = FleetSpec.uniform(
        nodes, gpus, racks=2, zones=2, seed=seed, busy_share=busy_share, idle_gap_mean_s=1e6
    )
    fleet = SimFleet(spec, clock)
    jobs = JobView(fleet)
    batches = []
    try:
        for _ in range(minutes * 6):
            clock.advance(10.0)
            batches.append(encode_many([*fleet.read(), *jobs.read()]))
    finally:
        fleet.close()
    return batches, clock


def fill_store(
    path: Path,
    *,
    nodes: int = 8,
    gpus: int = 4,
    minutes: int = 12,
    seed: int = 11,
    busy_share: float = 0.5,
) -> ManualClock:
    """The twin of :func:`twin_lines` written into an embedded store at ``path``.

    Returns a clock standing at the end of the data.
    """
    batches, clock = twin_lines(
        nodes=nodes, gpus=gpus, minutes=minutes, seed=seed, busy_share=busy_share
    )
    store = EmbeddedSqliteStore(path)
    try:
        for batch in batches:
            store.write(batch)
    finally:
        store.close()
    return clock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI, *, http: type[asyncio.Protocol] | str = "auto") -> Iterator[str]:
    """Run ``app`` under uvicorn on a free port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http=http
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
