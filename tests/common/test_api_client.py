"""Each way the optimizer's API can fail a command becomes one documented error, against a
real HTTP peer on a socket."""

from __future__ import annotations

import json
import socket

import pytest

from tests.agent.http_peer import Answer, http_peer
from wattwise.common.api_client import ApiClient
from wattwise.common.secrets import Secret
from wattwise.errors import ApiAuthError, ApiError, ApiRefused, ApiUnavailable

TOKEN = Secret("t0ken")


def _json(status: int, body: object) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def test_a_2xx_answer_is_its_json_and_the_token_goes_as_a_bearer() -> None:
    answer = _json(200, {"count": 0, "items": []})
    with http_peer([answer]) as peer, ApiClient(peer.url, TOKEN) as client:
        body = client.call("GET", "/v1/power-events", params={"all": "true"})
    assert body == {"count": 0, "items": []}
    [request] = peer.requests
    assert request.path == "/v1/power-events?all=true"
    assert request.headers["authorization"] == "Bearer t0ken"


def test_a_refused_request_carries_the_apis_own_words() -> None:
    detail = ["body.end: is in the past: an event must end in the future"]
    answer = _json(422, {"error": "invalid request", "detail": detail})
    with (
        http_peer([answer]) as peer,
        ApiClient(peer.url, TOKEN) as client,
        pytest.raises(ApiRefused) as refused,
    ):
        client.call("POST", "/v1/power-events", body={"scope": "site"})
    assert refused.value.status == 422
    assert str(refused.value) == f"POST /v1/power-events: {detail[0]} (HTTP 422)"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_auth_error_not_a_refused_request(status: int) -> None:
    answer = _json(status, {"error": "forbidden", "detail": "needs the admin scope"})
    with (
        http_peer([answer]) as peer,
        ApiClient(peer.url, TOKEN) as client,
        pytest.raises(ApiAuthError, match=f"HTTP {status}.*needs the admin scope"),
    ):
        client.call("DELETE", "/v1/power-events/abc")


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (_json(503, {"error": "events not saved", "detail": "disk full"}), "HTTP 503: disk full"),
        (Answer(200, {}, b"<html>proxy</html>"), "not JSON"),
    ],
)
def test_a_5xx_or_a_body_that_is_not_json_is_unavailable(answer: Answer, match: str) -> None:
    with (
        http_peer([answer]) as peer,
        ApiClient(peer.url, TOKEN) as client,
        pytest.raises(ApiUnavailable, match=match),
    ):
        client.call("GET", "/v1/power-events")


def test_an_optimizer_that_is_not_there_is_unavailable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with (
        ApiClient(f"http://127.0.0.1:{port}", TOKEN, timeout_s=2) as client,
        pytest.raises(ApiUnavailable, match="cannot reach the optimizer") as error,
    ):
        client.call("GET", "/v1/power-events")
    assert isinstance(error.value, ApiError) and "t0ken" not in str(error.value)
