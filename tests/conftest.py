from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.influxd import InfluxServer
from tests.redfish_peer import ServeRedfish, make_self_signed_cert, redfish_servers

REPO = Path(__file__).resolve().parent.parent
H100_DATA = REPO / "tests" / "data" / "h100"
PROVISIONING_DIR = REPO / "deploy" / "grafana" / "provisioning"


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One real influxd shared by the session; tests use their own databases."""
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxd_private(tmp_path: Path) -> Iterator[InfluxServer]:
    """A real influxd of this test's own, which the test may stop and restart."""
    (tmp_path / "influxd").mkdir()
    server = InfluxServer(tmp_path / "influxd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxd_auth(tmp_path: Path) -> Iterator[InfluxServer]:
    """A real influxd with authentication on; ``admin`` holds the admin credentials."""
    (tmp_path / "influxd").mkdir()
    server = InfluxServer(tmp_path / "influxd", auth=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def serve_redfish() -> Iterator[ServeRedfish]:
    """Starts the real sushy-static (or sushy-emulator) on a loopback port; yields its URL."""
    yield from redfish_servers()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 that no system trusts."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs: writes past its size fail with ENOSPC (mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
