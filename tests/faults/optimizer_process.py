"""The optimizer as operators run it (``python -m wattwise optimizer serve``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.influxd import free_port
from tests.optimizer.service.support import ADMIN_TOKEN, EXTENDER_TOKEN, READ_TOKEN, sha

TOKENS = (READ_TOKEN, ADMIN_TOKEN, EXTENDER_TOKEN)


def optimizer_config(tmp_path: Path, store: str, **sections: str) -> Path:
    """Tokens for reader, ops and kube; ``store`` is the ``[store]`` section's body."""
    port = free_port()
    tokens = ", ".join(
        f'{{ name = "{name}", sha256 = "{sha(token)}", scopes = ["{scope}"] }}'
        for name, token, scope in (
            ("reader", READ_TOKEN, "read"),
            ("ops", ADMIN_TOKEN, "admin"),
            ("kube", EXTENDER_TOKEN, "extender"),
        )
    )
    body = {
        "api": f"port = {port}\ntokens = [{tokens}]\naccess_log = true\nrequest_timeout_s = 2.0",
        "store": store,
        # the twin's data is from 2023: windows long enough to reach it from today
        "models": "window_s = 1e9\nrefit_interval_s = 86400",
        "recommend": "recent_s = 1e9\nrefresh_interval_s = 86400",
    }
    for name, extra in sections.items():
        body[name] = f"{body.get(name, '')}\n{extra}".strip()
    path = tmp_path / "optimizer.toml"
    path.write_text("".join(f"[{name}]\n{text}\n" for name, text in body.items()))
    return path


class Optimizer:
    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        port = next(
            line.split("=")[1].strip()
            for line in config.read_text().splitlines()
            if line.startswith("port =")
        )
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wattwise", "optimizer", "serve", "--config", str(config)],
                env={**os.environ, "WATTWISE_LOG_LEVEL": "INFO"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_until(self, *, ready: bool, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()[-3000:]
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=5).json()
                if health["ready"] or not ready:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"optimizer not up: {self.text()[-3000:]}")

    def peak_rss_mib(self) -> float:
        """The process's peak resident memory so far (VmHWM)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def server_errors(self) -> int:
        """Answers so far that were the optimizer's own failure, by its /metrics: every 5xx
        but 502 and 503, which say that the store refused or cannot be reached."""
        text = httpx.get(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        ).text
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("wattwise_api_requests_total")
            and 'status="5' in line
            and 'status="502"' not in line
            and 'status="503"' not in line
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tracebacks(self) -> int:
        return self.text().count("Traceback")

    def secrets(self) -> int:
        """Tokens that reached the log (they must never)."""
        return sum(self.text().count(token) for token in TOKENS)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
