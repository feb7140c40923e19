"""Fetching this node's caps from a real HTTP server, and the limit each GPU gets."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.agent.plans import HOST, budget, cap, plan_answer
from wattwise.agent.power_limits import GpuLimits
from wattwise.agent.power_plan import PLAN_PATH, PlanClient, PlannedCap, decide
from wattwise.common.http import tls_verify
from wattwise.common.secrets import Secret
from wattwise.errors import ConfigError, PlanAuthError, PlanUnavailable

H100 = GpuLimits(min_w=200.0, max_w=700.0, default_w=700.0, enforced_w=700.0)


def client(url: str, **kwargs: object) -> PlanClient:
    return PlanClient(url, Secret("s3cret-token"), HOST, **kwargs)  # type: ignore[arg-type]


def test_fetch_sends_the_token_and_host_and_keeps_only_this_hosts_caps() -> None:
    answer = plan_answer(
        budget("rack:r01", cap(0, 480.0), cap(1, 520.0), cap(0, 300.0, host="r01-n02")),
        budget("site", cap(1, 450.0)),
    )
    with http_peer([answer]) as peer:
        caps = client(peer.url).fetch()
    assert caps == [
        PlannedCap("rack:r01", 0, 480.0),
        PlannedCap("rack:r01", 1, 520.0),
        PlannedCap("site", 1, 450.0),
    ]
    [request] = peer.requests
    assert request.method == "GET"
    assert request.path == f"{PLAN_PATH}?host={HOST}"
    assert request.headers["authorization"] == "Bearer s3cret-token"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_auth_error_that_says_what_to_check(status: int) -> None:
    refused = f"refused the token \\(HTTP {status}\\)"
    with (
        http_peer([Answer(status, body=b'{"detail": "bad token"}')]) as peer,
        pytest.raises(PlanAuthError, match=refused) as e,
    ):
        client(peer.url).fetch()
    assert "read scope" in str(e.value) and "s3cret" not in str(e.value)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (Answer(503, body=b'{"detail": "no recommendations yet"}'), "HTTP 503"),
        (Answer(404, body=b"{}"), "has no /v1/recommendations/power-budget"),
        (Answer(200, body=b"<html>proxy login</html>"), "not JSON"),
        (Answer(200, body=b'{"items": {}}'), "no power-budget plan: no list of items"),
        (Answer(200, body=b'{"items": [{"scope": "site"}]}'), "without a list of caps"),
        (
            Answer(200, body=b'{"items": [{"scope": "site", "caps": [{"host": "r01-n01"}]}]}'),
            "site has no GPU index",
        ),
    ],
)
def test_anything_but_a_plan_is_unavailable(answer: Answer, match: str) -> None:
    with http_peer([answer]) as peer, pytest.raises(PlanUnavailable, match=match):
        client(peer.url).fetch()


def test_an_optimizer_that_is_not_there_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    with pytest.raises(PlanUnavailable, match="cannot reach the optimizer"):
        client(f"http://127.0.0.1:{port}").fetch()


def test_an_optimizer_that_never_answers_times_out() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()  # the connection is accepted by the kernel, never answered
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(PlanUnavailable, match=r"did not answer within 0\.2 s"):
            client(url, timeout_s=0.2).fetch()


def test_https_with_the_sites_ca_file(self_signed_cert: tuple[Path, Path]) -> None:
    cert, key = self_signed_cert
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with http_peer([plan_answer(budget("site", cap(2, 500.0)))], tls=tls) as peer:
        assert client(peer.url, verify=tls_verify(cert, False)).fetch() == [
            PlannedCap("site", 2, 500.0)
        ]
        with pytest.raises(PlanUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            client(peer.url, verify=tls_verify(None, False)).fetch()
        assert client(peer.url, verify=tls_verify(None, True)).fetch()


def test_insecure_and_a_ca_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        tls_verify(tmp_path / "ca.pem", True)
    with pytest.raises(ConfigError, match="--ca-file"):
        tls_verify(tmp_path / "missing.pem", False)


def test_each_gpu_gets_the_lowest_limit_of_all_plans() -> None:
    caps = [
        PlannedCap("rack:r01", 0, 480.0),
        PlannedCap("site", 0, 450.0),
        PlannedCap("zone:z1", 0, 450.0),
        PlannedCap("site", 1, 600.0),
        PlannedCap("rack:r01", 1, 650.0),
    ]
    decision = decide(caps, dict.fromkeys(range(4), H100))
    assert {gpu: t.limit_w for gpu, t in decision.targets.items()} == {0: 450.0, 1: 600.0}
    assert decision.targets[0].scopes == ("site", "zone:z1")
    assert decision.targets[1].scopes == ("site",)
    assert decision.refused == ()


def test_limits_are_clamped_to_the_gpus_range() -> None:
    caps = [PlannedCap("site", 0, 150.0), PlannedCap("site", 1, 900.0)]
    targets = decide(caps, {0: H100, 1: H100}).targets
    assert (targets[0].limit_w, targets[0].planned_w) == (200.0, 150.0)
    assert (targets[1].limit_w, targets[1].planned_w) == (700.0, 900.0)


def test_a_cap_for_a_gpu_the_node_does_not_have_is_refused() -> None:
    caps = [PlannedCap("site", 7, 400.0), PlannedCap("site", 0, 400.0)]
    decision = decide(caps, {0: H100, 1: H100})
    assert list(decision.targets) == [0]
    assert decision.refused == (PlannedCap("site", 7, 400.0),)
