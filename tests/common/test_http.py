"""Deadlines for whole requests, against real servers on localhost."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.drip import drip_server
from wattwise.common.http import deadline, deadline_client


def test_dripping_headers_end_at_the_total_deadline_not_never() -> None:
    with drip_server(interval_s=0.1) as server:
        client = deadline_client(server.url, timeout_s=5.0, total_s=0.5)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/")
        client.close()


def test_dripping_body_of_a_streamed_answer_ends_at_the_total_deadline() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n"
    with drip_server(interval_s=0.01, head=head) as server:
        client = deadline_client(server.url, timeout_s=5.0, total_s=1.0)
        received = 0
        with pytest.raises(httpx.ReadTimeout), client.stream("GET", "/") as response:
            for chunk in response.iter_bytes():
                received += len(chunk)
        client.close()
    assert response.status_code == 200 and received > 0


def test_an_enclosing_deadline_shortens_every_request_inside_it() -> None:
    with drip_server(interval_s=0.1) as server:
        client = deadline_client(server.url, timeout_s=60.0, total_s=60.0)
        with pytest.raises(httpx.ReadTimeout), deadline(time.monotonic() + 0.5):
            client.get("/")
        client.close()


def test_a_prompt_server_is_answered_as_by_plain_httpx() -> None:
    with http_peer([Answer(204, {"X-Seen": "yes"})]) as peer:
        client = deadline_client(peer.url, timeout_s=5.0, total_s=5.0)
        response = client.post("/write", content=b"m v=1 1")
        client.close()
    assert response.status_code == 204 and response.headers["x-seen"] == "yes"
    assert peer.requests[0].body == b"m v=1 1"
