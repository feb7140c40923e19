"""The optimizer under faults, as a real ``wattwise optimizer serve`` process.

Hostile clients (huge, slow or malformed requests) and hostile data (junk telemetry,
a store answering junk or a byte at a time): the API must answer each with a 4xx or
a 502/503 saying what is wrong, never a 5xx of its own, with no traceback and no
token in its log, and stay under 600 MB of memory whatever it is sent.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.drip import drip_server
from tests.faults.agent_process import wait_for
from tests.faults.conftest import Record
from tests.faults.optimizer_process import Optimizer, optimizer_config
from tests.optimizer.service.support import ADMIN_TOKEN, EXTENDER_TOKEN, READ_TOKEN, fill_store
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import encode_many

pytestmark = pytest.mark.faults

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PEAK_RSS_MIB = 600


@pytest.fixture(scope="module")
def twin_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("twin") / "wattwise.sqlite"
    fill_store(path)
    return path


@pytest.fixture(scope="module")
def optimizer(twin_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Optimizer]:
    root = tmp_path_factory.mktemp("optimizer")
    store = root / "wattwise.sqlite"
    shutil.copy(twin_store, store)
    config = optimizer_config(root, f'kind = "embedded"\nembedded_path = "{store}"')
    server = Optimizer(config, root / "optimizer.log")
    try:
        server.wait_until(ready=True)
        yield server
    finally:
        server.stop()


def outcome(server: Optimizer) -> dict[str, object]:
    return {
        "5xx": server.server_errors(),
        "peak_rss_mib": round(server.peak_rss_mib()),
        "tracebacks": server.tracebacks(),
        "secrets": server.secrets(),
    }


def assert_sound(figures: dict[str, object]) -> None:
    assert figures["5xx"] == 0 and figures["tracebacks"] == 0 and figures["secrets"] == 0
    assert isinstance(figures["peak_rss_mib"], int) and figures["peak_rss_mib"] < PEAK_RSS_MIB


def post_raw(url: str, head: str, body_bytes: int) -> bytes:
    """POST ``head`` and up to ``body_bytes`` of body, stopping when the server answers."""
    parts = httpx.URL(url)
    with socket.create_connection((parts.host, parts.port)) as sock:
        sock.settimeout(60)
        sock.sendall(head.encode())
        chunk, sent = b" " * 65536, 0
        try:
            while sent < body_bytes:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed: the rest of the body was never read
        reply = b""
        try:
            while part := sock.recv(65536):
                reply += part
        except OSError:
            pass
    return reply


def test_unauthenticated_100_mb_bodies(optimizer: Optimizer, reliability: Record) -> None:
    declared = post_raw(
        optimizer.url,
        "POST /v1/extender/filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 << 20}\r\n\r\n",
        100 << 20,
    )
    chunked = post_raw(
        optimizer.url,
        "POST /v1/extender/filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n" + f"{100 << 20:x}\r\n",
        100 << 20,
    )
    assert declared.startswith(b"HTTP/1.1 413") and chunked.startswith(b"HTTP/1.1 401")
    assert httpx.get(f"{optimizer.url}/healthz").status_code == 200
    figures = outcome(optimizer)
    assert_sound(figures)
    reliability(
        "optimizer",
        "unauthenticated 100 MB JSON bodies to /v1/extender/filter",
        "413 for a declared length past 8 MiB, 401 for a chunked one, before reading either",
        answers="413, 401",
        **figures,
    )


def node(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": "z1"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": "4", "cpu": "64", "memory": "512Gi"},
            "images": [{"names": [f"registry.example/team/image-{i}:v1"]} for i in range(10)],
        },
    }


def test_authenticated_body_at_the_size_cap(optimizer: Optimizer, reliability: Record) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}  # fmt: skip
    items = [node(f"sim-r01-n0{i}") for i in range(1, 5)]
    items += [node(f"node-{i:05d}") for i in range(11_000)]
    body = json.dumps({"Pod": pod, "Nodes": {"items": items}, "NodeNames": None}).encode()
    assert 7 << 20 < len(body) < 8 << 20
    headers = {"Authorization": f"Bearer {EXTENDER_TOKEN}", "Content-Type": "application/json"}
    answer = httpx.post(
        f"{optimizer.url}/v1/extender/filter", headers=headers, content=body, timeout=120
    )
    assert answer.status_code == 200 and answer.json()["Error"] == ""
    kept = {i["metadata"]["name"] for i in answer.json()["Nodes"]["items"]}
    assert kept and kept <= {f"sim-r01-n0{i}" for i in range(1, 5)}
    figures = outcome(optimizer)
    assert_sound(figures)
    reliability(
        "optimizer",
        f"a {len(body) / 2**20:.1f} MiB NodeList of {len(items):,} nodes (under the 8 MiB cap)",
        "parsed and filtered on a worker thread; 200",
        answers="200",
        **figures,
    )


def pod_with(limit: str, annotations: dict[str, object]) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": limit}}}]},
    }


def test_pods_the_scheduler_got_wrong(optimizer: Optimizer, reliability: Record) -> None:
    answers = []
    for pod in (
        pod_with("1" * 5000, {}),
        pod_with("1", {"wattwise.io/expected-power-w": ["300"]}),
    ):
        args = {"Pod": pod, "Nodes": None, "NodeNames": ["sim-r01-n01"]}
        for verb in ("filter", "prioritize"):
            url = f"{optimizer.url}/v1/extender/k/{EXTENDER_TOKEN}/{verb}"
            answers.append(httpx.post(url, json=args, timeout=30).status_code)
    assert answers == [200, 400, 200, 400]
    figures = outcome(optimizer)
    assert_sound(figures)
    reliability(
        "optimizer",
        'nvidia.com/gpu of "1"×5000, a list-valued expected-power annotation (token in the path)',
        "filter: the protocol's Error field; prioritize: 400; the path token never logged",
        answers="200 + Error, 400",
        **figures,
    )


def test_client_sending_a_byte_at_a_time(optimizer: Optimizer, reliability: Record) -> None:
    parts = httpx.URL(optimizer.url)
    with socket.create_connection((parts.host, parts.port)) as sock:
        sock.settimeout(60)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408")
    figures = outcome(optimizer)
    assert_sound(figures)
    reliability(
        "optimizer",
        "a client that sends half its headers and waits",
        "408 and the connection closed after api.request_timeout_s",
        answers="408",
        **figures,
    )


def test_junk_telemetry_on_3_of_32_gpus(
    optimizer: Optimizer, reliability: Record, twin_store: Path
) -> None:
    store = Path(
        next(
            line.split("=", 1)[1].strip().strip('"')
            for line in (optimizer.log.parent / "optimizer.toml").read_text().splitlines()
            if line.startswith("embedded_path")
        )
    )
    writer = EmbeddedStore(store)
    latest = writer.latest("gpu")[:3]
    writer.write(
        encode_many(
            Reading("gpu", dict(p.tags), {"util_gpu_pct": 1e30}, p.time_ns - s * 10**10)
            for p in latest
            for s in range(60)
        )
    )
    writer.close()
    refit = httpx.post(f"{optimizer.url}/v1/refit", headers=ADMIN, timeout=300)
    refresh = httpx.post(f"{optimizer.url}/v1/refresh", headers=ADMIN, timeout=300)
    caps = httpx.get(f"{optimizer.url}/v1/recommendations/power-caps", headers=READ).json()
    models = httpx.get(f"{optimizer.url}/v1/models", headers=READ).json()
    assert refit.status_code == refresh.status_code == 200 and caps["count"] == 32
    dropped = models["dropped_values"]["gpu.util_gpu_pct"]
    assert dropped >= 3
    figures = outcome(optimizer)
    assert_sound(figures)
    reliability(
        "optimizer",
        "util_gpu_pct of 1e30 on 3 of 32 GPUs",
        f"the values are dropped ({dropped} in /v1/models and /metrics); refit, refresh "
        "and all 32 recommendations go on",
        answers="200",
        **figures,
    )


@pytest.mark.parametrize("fault", ["junk answers", "dripping answers"])
def test_store_answering_junk_or_a_byte_at_a_time(
    tmp_path: Path, fault: str, reliability: Record
) -> None:
    junk = Answer(200, {"Content-Type": "application/json"}, b"[1,2,3]")
    peer = http_peer([junk]) if fault == "junk answers" else drip_server(interval_s=0.2)
    with peer as hostile:
        store = f'url = "{hostile.url}"\ndatabase = "wattwise"\nquery_deadline_s = 2.0'
        server = Optimizer(optimizer_config(tmp_path, store), tmp_path / "optimizer.log")
        try:
            server.wait_until(ready=False)
            # the scheduler's first refit and refresh run at start: they fail, bounded
            wait_for(lambda: "refresh failed" in server.text(), 120)
            answers = [
                httpx.post(f"{server.url}/v1/{job}", headers=ADMIN, timeout=120).status_code
                for job in ("refit", "refit", "refresh")
            ]
            reads = httpx.get(f"{server.url}/v1/recommendations/power-caps", headers=READ)
            figures = outcome(server)
        finally:
            server.stop()
    expected = 502 if fault == "junk answers" else 503
    assert answers == [expected] * 3 and reads.status_code == 503  # never "ready, 0 items"
    assert_sound(figures)
    reliability(
        "optimizer",
        f"the store sends {'[1,2,3]' if fault == 'junk answers' else 'a byte every 0.2 s'}",
        f"{expected} saying what was wrong; a second refit is not 409 (the lock is free); "
        "reads 503 until a refresh succeeds",
        answers=f"{expected} ×3",
        **figures,
    )
