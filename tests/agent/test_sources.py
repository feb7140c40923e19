"""``agent probe``'s reading of every configured source: each failure is named with its reason."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.redfish_peer import ServeRedfish
from wattwise.agent.config import load_config
from wattwise.agent.sources import ProbeOutcome, probe_sources
from wattwise.clock import ManualClock

NODE_TREE = Path(__file__).parents[1] / "collector" / "fixtures" / "redfish" / "node"


def _probe(tmp_path: Path, bmc: str) -> dict[str, ProbeOutcome]:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[agent]\nsource = "nvml"\n[bmc]\nkind = "redfish"\n{bmc}\n')
    config = load_config(config_file, None, {}, require_file=True)
    outcomes = probe_sources(config, ManualClock(), {}, settle_s=0.0)
    return {outcome.source: outcome for outcome in outcomes}


@pytest.fixture
def refusing_bmc() -> Iterator[str]:
    """A real HTTP server that answers every request 401, as a BMC given wrong credentials."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_names_a_bmc_whose_certificate_is_not_trusted(
    tmp_path: Path, serve_redfish: ServeRedfish, self_signed_cert: tuple[Path, Path]
) -> None:
    # Regression: the probe said "error": null, "readings": [] and the reason was in a
    # log line without its detail.
    cert, key = self_signed_cert
    url = serve_redfish("-m", str(NODE_TREE), "-c", str(cert), "-k", str(key), https=True)
    bmc = _probe(tmp_path, f'url = "{url}"')["bmc"]
    assert bmc.readings == []
    assert bmc.error is not None and "certificate is not trusted" in bmc.error
    assert "bmc.ca_file" in bmc.error


def test_probe_names_a_bmc_that_refuses_the_credentials(tmp_path: Path, refusing_bmc: str) -> None:
    bmc = _probe(tmp_path, f'url = "{refusing_bmc}"\nusername = "root"')["bmc"]
    assert bmc.error is not None and "refused the credentials (401)" in bmc.error


def test_probe_reads_a_trusted_bmc_and_names_the_missing_gpu_driver(
    tmp_path: Path, serve_redfish: ServeRedfish
) -> None:
    url = serve_redfish("-m", str(NODE_TREE))
    outcomes = _probe(tmp_path, f'url = "{url}"')
    assert outcomes["bmc"].error is None
    [reading] = outcomes["bmc"].readings
    assert reading.fields == {"inlet_temp_c": 23.5, "node_power_w": 2875.0}
    # No NVIDIA driver on this machine: the probe says so instead of leaving nvml out.
    assert outcomes["nvml"].error and outcomes["nvml"].readings == []
    assert outcomes["host"].error is None and outcomes["host"].readings
