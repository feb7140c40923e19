"""The refit benchmark's fleet written into real stores and read back as the engine reads it.

:func:`lines` turns the simulated day (1-minute points, as the stores' 1-minute rollups
would hold it) into the agent's line protocol; :func:`load` writes it into a fresh
``influxd`` or VictoriaMetrics in a temporary directory; :func:`read_fleet` reads the
four series and the latest states through the store, with the clock at the day's end,
exactly as :meth:`wattwise.optimizer.service.engine.Engine` does for a refit.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.influxd import InfluxServer
from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.clock import ManualClock
from wattwise.optimizer.store import InfluxStore, PrometheusStore
from wattwise.optimizer.telemetry import Scope, Series, TelemetryStore

BATCH_LINES = 50_000
MINUTE_NS = 60 * 10**9


@dataclass
class Loaded:
    """A fresh store and the server behind it."""

    kind: str
    url: str
    store: TelemetryStore
    flush: Callable[[], None]


@dataclass
class Written:
    lines: int
    write_s: float


def lines(gpus: Series, hosts: Series, zones: Series, jobs: Series) -> Iterator[list[bytes]]:
    """The fleet's points as line protocol, in batches."""
    yield from _batches(_gpu_lines(gpus))
    yield from _batches(_simple_lines("host", hosts, ("host", "zone", "rack")))
    yield from _batches(_simple_lines("cooling", zones, ("zone",)))
    yield from _batches(_simple_lines("gpu_job", jobs, ("host", "gpu", "job")))


STATIC = (
    "min_limit_w=200.0,max_limit_w=700.0,default_limit_w=700.0,slowdown_temp_c=87.0,"
    "mem_used_bytes=0i,mem_total_bytes=80000000000i,"
)
"""What the NVML source reports of each GPU's limits and memory, on its newest sample."""


def _gpu_lines(g: Series) -> Iterator[bytes]:
    v = g.values
    newest = int(g.time_ns.max()) if len(g) else 0
    capped = np.where(v["capped_share"] > 0.5, 4, 0)
    energy = v["power_w"] * 60.0
    tags = zip(g.tags["host"], g.tags["gpu"], g.tags["zone"], g.tags["rack"], strict=True)
    columns = zip(
        g.time_ns.tolist(),
        v["power_w"].tolist(),
        v["util_gpu_pct"].tolist(),
        v["util_mem_pct"].tolist(),
        v["sm_clock_mhz"].tolist(),
        v["power_limit_w"].tolist(),
        v["temp_c"].tolist(),
        capped.tolist(),
        energy.tolist(),
        strict=True,
    )
    for (host, gpu, zone, rack), (t, p, u, m, c, lim, temp, reasons, e) in zip(
        tags, columns, strict=True
    ):
        static = STATIC if t == newest else ""
        yield (
            f"gpu,cluster=c,gpu={gpu},host={host},model=H100,rack={rack},zone={zone} {static}"
            f"power_w={p!r},util_gpu_pct={u!r},util_mem_pct={m!r},sm_clock_mhz={c!r},"
            f"power_limit_w={lim!r},enforced_limit_w={lim!r},temp_c={temp!r},"
            f"clock_event_reasons={reasons}i,energy_j={e!r},failed=0i {t}"
        ).encode()


def _simple_lines(measurement: str, s: Series, tag_names: tuple[str, ...]) -> Iterator[bytes]:
    names = list(s.values)
    tag_columns = [s.tags[t].tolist() for t in tag_names]
    value_columns = [s.values[n].tolist() for n in names]
    for row, t in enumerate(s.time_ns.tolist()):
        tags = ",".join(f"{k}={col[row]}" for k, col in zip(tag_names, tag_columns, strict=True))
        fields = ",".join(f"{n}={col[row]!r}" for n, col in zip(names, value_columns, strict=True))
        yield f"{measurement},cluster=c,{tags} {fields} {t}".encode()


def _batches(items: Iterator[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


class _Influx(InfluxServer):
    """influxd without its per-tag and per-database cardinality limits: a day of 10,000
    GPUs has about 600,000 job ids, and 1.x refuses the 100,001st value of a tag."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        text = self._config.read_text()
        unlimited = "[data]\n  max-values-per-tag = 0\n  max-series-per-database = 0\n"
        self._config.write_text(text.replace("[data]\n", unlimited, 1))


@contextmanager
def load(kind: str, end_ns: int) -> Iterator[Loaded]:
    """A fresh ``kind`` store (``influx`` or ``victoria``) in a temporary directory, read
    with the clock at ``end_ns``."""
    with tempfile.TemporaryDirectory(prefix=f"wattwise-bench-{kind}-") as root:
        server = _Influx(Path(root)) if kind == "influx" else VictoriaMetricsServer(Path(root))
        server.start()
        try:
            clock = ManualClock(start_ns=end_ns)
            store: TelemetryStore
            if isinstance(server, InfluxServer):
                server.create_database("bench")
                # one InfluxQL query reads the whole day: past the default 120 s deadline here,
                # and influxd thinks longer than the default 10 s before its first chunk
                store = InfluxStore(
                    server.url, database="bench", clock=clock, timeout_s=600.0, deadline_s=3600.0
                )
                flush: Callable[[], None] = lambda: None  # noqa: E731 - readable at once
            else:
                store = PrometheusStore(server.url, clock=clock, sample_interval_s=60.0)
                flush = server.flush
            try:
                yield Loaded(kind, server.url, store, flush)
            finally:
                store.close()
        finally:
            server.stop()


def write_fleet(loaded: Loaded, fleet: Any) -> Written:
    """The fleet's day written into the store as line protocol on ``/write``."""
    started, written = time.perf_counter(), 0
    with httpx.Client(timeout=600) as client:
        for batch in lines(fleet.gpus, fleet.hosts, fleet.zones, fleet.jobs):
            body = gzip.compress(b"\n".join(batch), compresslevel=1)
            response = client.post(
                f"{loaded.url}/write",
                params={"db": "bench", "precision": "ns"},
                content=body,
                headers={"Content-Encoding": "gzip"},
            )
            response.raise_for_status()
            written += len(batch)
    loaded.flush()
    return Written(written, time.perf_counter() - started)


def read_fleet(
    store: TelemetryStore, start_ns: int, end_ns: int, times: dict[str, float]
) -> dict[str, Any]:
    """What a refit and a refresh read: the four series over the day, the latest states;
    ``times`` gets each read's seconds."""
    scope = Scope()
    reads: dict[str, Callable[[], object]] = {
        "gpus": lambda: store.gpu_series(start_ns, end_ns, every_s=60, scope=scope),
        "hosts": lambda: store.host_series(start_ns, end_ns, every_s=60, scope=scope),
        "zones": lambda: store.zone_series(start_ns, end_ns, every_s=60, scope=scope),
        "jobs": lambda: store.job_series(start_ns, end_ns, every_s=60, scope=scope),
        "gpu_states": lambda: store.latest_gpus(scope),
        "host_states": lambda: store.latest_hosts(scope),
        "zone_states": lambda: store.latest_zones(scope),
    }
    out = {}
    for name, read in reads.items():
        started = time.perf_counter()
        out[name] = read()
        times[f"read_{name}"] = time.perf_counter() - started
    return out
