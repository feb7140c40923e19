"""A real ``influxd`` (Debian's influxdb 1.x package) for tests and benchmarks.

Each :class:`InfluxServer` runs in its own temporary directory on free
loopback ports, and can be stopped and started again on the same data to
simulate an outage.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def influxd_binary() -> str:
    path = shutil.which("influxd") or "/usr/bin/influxd"
    if not Path(path).exists():
        raise RuntimeError(
            "influxd not found: install Debian's influxdb package (make test does this)"
        )
    return path


class InfluxServer:
    """One influxd process with its data under ``root``."""

    def __init__(self, root: Path, *, auth: bool = False, max_body_bytes: int = 25_000_000) -> None:
        self.root = root
        self.auth = auth
        self.port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = ("admin", "admin-secret")
        self._proc: subprocess.Popen[bytes] | None = None
        self._config = root / "influxdb.conf"
        self._config.write_text(
            f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if auth else "false"}
  log-enabled = false
  max-body-size = {max_body_bytes}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
        )

    def start(self, timeout_s: float = 30.0) -> None:
        log = open(self.root / "influxd.log", "ab")  # noqa: SIM115 - kept open by the child
        self._proc = subprocess.Popen(
            [influxd_binary(), "-config", str(self._config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"influxd exited: {(self.root / 'influxd.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    if self.auth:
                        self._ensure_admin()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("influxd did not answer /ping in time")

    def _ensure_admin(self) -> None:
        user, password = self.admin
        # The first user may be created without credentials; later calls need them.
        httpx.post(
            f"{self.url}/query",
            params={"q": f"CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"},
            auth=self.admin,
        )

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        auth = self.admin if self.auth else None
        r = httpx.post(f"{self.url}/query", params=params, auth=auth, timeout=60)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def rows(self, q: str, db: str) -> list[dict[str, object]]:
        """Run ``q`` and return every row of every series as a dict (tags included)."""
        out: list[dict[str, object]] = []
        for result in self.query(q, db).get("results", []):
            if "error" in result:
                raise RuntimeError(result["error"])
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(tags)
                    out.append(row)
        return out
