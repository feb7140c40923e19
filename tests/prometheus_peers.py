"""A real Prometheus and a real VictoriaMetrics (Debian's ``prometheus`` and
``victoria-metrics`` packages) for tests and benchmarks, and an exporter to scrape.

Each server runs in its own temporary directory on a free loopback port. Data
reaches them through their own ingestion paths: VictoriaMetrics takes the agent's
line protocol on ``/write``; Prometheus scrapes a :class:`ReplayExporter`, which
serves readings in the Prometheus text format *with their timestamps*, so a
scrape can carry minutes of history (Prometheus accepts old samples into an empty
head, and more of them in order per series in one scrape).
"""

from __future__ import annotations

import http.server
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.influxd import free_port
from wattwise.collector.base import Reading
from wattwise.common.prom_names import metric_name


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        raise RuntimeError(f"{name} not found: install Debian's {package} package (make test does)")
    return path


class _Server:
    """One server process with its data and log under ``root``."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 60.0) -> None:
        log = open(self.root / f"{self.name}.log", "ab")  # noqa: SIM115 - kept by the child
        self._proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                if self._ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / f"{self.name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def query(self, expression: str, at_s: float) -> list[dict[str, Any]]:
        """An instant query's result (for tests' own checks)."""
        response = httpx.post(
            f"{self.url}/api/v1/query",
            data={"query": expression, "time": f"{at_s:.3f}"},
            timeout=60,
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def wait_for(
        self, expression: str, at_s: float | None, count: int, timeout_s: float = 60.0
    ) -> None:
        """Until ``expression`` at ``at_s`` (None: now) gives at least ``count`` series."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.query(expression, time.time() if at_s is None else at_s)) >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name}: {expression} never gave {count} series: {self.log_tail()}"
        )


class VictoriaMetricsServer(_Server):
    """Single-node VictoriaMetrics: Prometheus query API, line protocol on ``/write``."""

    name = "victoria-metrics"

    def _command(self) -> list[str]:
        return [
            _binary("victoria-metrics", "victoria-metrics"),
            f"-storageDataPath={self.root / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",  # the tests' data may be from years ago
            "-search.latencyOffset=0s",  # and from a moment ago
            "-search.disableCache",  # each test writes, then reads at once
            "-loggerLevel=ERROR",
        ]

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200

    def write(self, lines: Sequence[bytes], db: str = "wattwise") -> None:
        for first in range(0, len(lines), 5000):
            body = b"\n".join(lines[first : first + 5000])
            r = httpx.post(f"{self.url}/write", params={"db": db}, content=body, timeout=60)
            r.raise_for_status()
        self.flush()

    def flush(self) -> None:
        """Make everything written searchable now rather than within a second."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=60).raise_for_status()


class PrometheusServer(_Server):
    """Prometheus scraping ``targets`` (host:port) every ``scrape_s`` with their own labels
    and timestamps honoured."""

    name = "prometheus"

    def __init__(self, root: Path, targets: Sequence[str], scrape_s: int = 1) -> None:
        super().__init__(root)
        listed = ", ".join(f'"{t}"' for t in targets)
        self._config = root / "prometheus.yml"
        self._config.write_text(
            f"""global:
  scrape_interval: {scrape_s}s
  scrape_timeout: {scrape_s}s
scrape_configs:
  - job_name: wattwise
    honor_labels: true
    honor_timestamps: true
    static_configs:
      - targets: [{listed}]
"""
        )

    def _command(self) -> list[str]:
        return [
            _binary("prometheus", "prometheus"),
            f"--config.file={self._config}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=100y",  # retention counts from the newest sample
            "--log.level=warn",
        ]

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200


def exposition(readings: Iterable[Reading]) -> str:
    """Readings in the Prometheus text format, named as VictoriaMetrics names their line
    protocol (``gpu_power_w{host=…}``), each sample with its reading's timestamp."""
    families: dict[str, list[str]] = {}
    for reading in sorted(readings, key=lambda r: r.time_ns):
        labels = ",".join(f"{k}={_label(v)}" for k, v in sorted(reading.tags.items()) if v)
        stamp_ms = reading.time_ns // 1_000_000
        for field, value in reading.fields.items():
            if value is None or isinstance(value, str):
                continue
            name = metric_name(reading.measurement, field)
            families.setdefault(name, []).append(f"{name}{{{labels}}} {_number(value)} {stamp_ms}")
    return "".join(
        f"# TYPE {name} gauge\n" + "\n".join(lines) + "\n" for name, lines in families.items()
    )


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _number(value: float | int | bool) -> str:
    number = float(value)
    return repr(number) if math.isfinite(number) else ("NaN" if math.isnan(number) else "+Inf")


class ReplayExporter:
    """Serves one fixed exposition text on ``/metrics`` until stopped."""

    def __init__(self, text: str) -> None:
        body = text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


DCGM_FIELDS: dict[str, tuple[str, float]] = {
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", 1.0),
    "DCGM_FI_DEV_POWER_USAGE_INSTANT": ("power_instant_w", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": ("temp_c", 1.0),
    "DCGM_FI_DEV_MEMORY_TEMP": ("mem_temp_c", 1.0),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", 1.0),
    "DCGM_FI_DEV_GPU_UTIL": ("util_gpu_pct", 1.0),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("util_mem_pct", 1.0),
    "DCGM_FI_DEV_FB_USED": ("mem_used_bytes", 1.0 / 2**20),
    "DCGM_FI_DEV_FB_TOTAL": ("mem_total_bytes", 1.0 / 2**20),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": ("power_limit_w", 1.0),
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT": ("enforced_limit_w", 1.0),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN": ("min_limit_w", 1.0),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX": ("max_limit_w", 1.0),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT_DEF": ("default_limit_w", 1.0),
    "DCGM_FI_DEV_SLOWDOWN_TEMP": ("slowdown_temp_c", 1.0),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("clock_event_reasons", 1.0),
    "DCGM_FI_PROF_SM_ACTIVE": ("sm_active_pct", 0.01),
    "DCGM_FI_PROF_DRAM_ACTIVE": ("dram_active_pct", 0.01),
}
"""dcgm-exporter's field (its default counters plus the limits, slowdown temperature, clock
event reasons and profiling fields a site enables in its CSV) → the wattwise field it
measures and the factor from wattwise's unit to dcgm's (MiB, fractions)."""


def dcgm_exposition(readings: Iterable[Reading], hostname_label: str = "Hostname") -> str:
    """``gpu`` readings as dcgm-exporter exposes them: its names, units and labels (``gpu``,
    ``UUID``, ``pci_bus_id``, ``device``, ``modelName``, the host label, the driver version),
    the energy as its mJ counter; every other reading as VictoriaMetrics names it (a site's
    host and cooling telemetry, which dcgm-exporter does not have)."""
    lines: dict[str, list[str]] = {}
    energy_mj: dict[tuple[str, str], float] = {}
    others = []
    for reading in sorted(readings, key=lambda r: r.time_ns):
        if reading.measurement != "gpu":
            others.append(reading)
            continue
        tags = reading.tags
        labels = ",".join(
            f"{k}={_label(v)}"
            for k, v in (
                ("gpu", tags["gpu"]),
                ("UUID", tags["uuid"]),
                ("pci_bus_id", f"00000000:{int(tags['gpu']) + 0x18:02X}:00.0"),
                ("device", f"nvidia{tags['gpu']}"),
                ("modelName", tags["model"]),
                (hostname_label, tags["host"]),
                ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
            )
        )
        stamp_ms = reading.time_ns // 1_000_000
        for name, (field, factor) in DCGM_FIELDS.items():
            value = reading.fields.get(field)
            if value is not None and not isinstance(value, str):
                lines.setdefault(name, []).append(
                    f"{name}{{{labels}}} {_number(float(value) * factor)} {stamp_ms}"
                )
        joules = reading.fields.get("energy_j")
        key = (tags["host"], tags["gpu"])
        if isinstance(joules, float):  # the counter moves when the energy was measured
            energy_mj[key] = energy_mj.get(key, 5e9) + 1000.0 * joules
        if key in energy_mj:
            name = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
            lines.setdefault(name, []).append(
                f"{name}{{{labels}}} {_number(energy_mj[key])} {stamp_ms}"
            )
    types = {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter"}
    text = "".join(
        f"# TYPE {name} {types.get(name, 'gauge')}\n" + "\n".join(found) + "\n"
        for name, found in lines.items()
    )
    return text + exposition(others)
