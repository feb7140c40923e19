"""Real Redfish BMCs for tests: sushy-tools' servers on loopback, and a self-signed CA."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.influxd import free_port

ServeRedfish = Callable[..., str]
"""``serve(*args, program="sushy-static", https=False)`` → the URL of a started BMC."""


def installed_program(name: str) -> str:
    """A console script installed beside this interpreter (its virtualenv's bin), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (it comes with the dev extras)")
    return found


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], program: str) -> None:
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{program} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/redfish/v1/Chassis", verify=False, timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{program} did not serve {url} in time")


def redfish_servers() -> Iterator[ServeRedfish]:
    """Starts the real sushy-static (or sushy-emulator) on a loopback port; yields its URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def serve(*args: str, program: str = "sushy-static", https: bool = False) -> str:
        port = free_port()
        process = subprocess.Popen(
            [installed_program(program), "-i", "127.0.0.1", "-p", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        url = f"{'https' if https else 'http'}://127.0.0.1:{port}"
        _wait_until_serving(url, process, program)
        return url

    yield serve
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "bmc.crt", directory / "bmc.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
