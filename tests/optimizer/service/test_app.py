"""The HTTP API over real HTTP: uvicorn on a free port, an engine on a twin-filled store."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.optimizer.service.support import (
    ADMIN_TOKEN,
    EXTENDER_TOKEN,
    READ_TOKEN,
    config,
    serve,
)
from wattwise.clock import ManualClock
from wattwise.common.embedded import EmbeddedStore
from wattwise.optimizer.service.app import ViewCache, create_app
from wattwise.optimizer.service.auth import RedactPathTokens
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.power_events import EventBook
from wattwise.optimizer.service.views import iso
from wattwise.optimizer.store import EmbeddedSqliteStore, InfluxStore

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROTECTED = [
    ("GET", "/v1/recommendations/power-caps"),
    ("GET", "/v1/recommendations/cooling"),
    ("GET", "/v1/models"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/refit"),
    ("POST", "/v1/refresh"),
    ("POST", "/v1/extender/filter"),
    ("GET", "/v1/recommendations/power-budget"),
    ("GET", "/v1/power-events"),
    ("GET", "/v1/power-events/0123"),
    ("POST", "/v1/power-events"),
    ("DELETE", "/v1/power-events/0123"),
]
ADMIN_ONLY = [
    ("POST", "/v1/refresh"),
    ("POST", "/v1/power-events"),
    ("DELETE", "/v1/power-events/0"),
]


def test_healthz_is_open_and_says_ready(client: httpx.Client) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["ready"] is True
    assert body["last_refresh"].endswith("Z")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_token_is_401_with_a_json_reason(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic cmVhZDp4", "Bearer"])
def test_wrong_token_or_scheme_is_401(client: httpx.Client, header: str) -> None:
    response = client.get("/v1/models", headers={"Authorization": header})
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
def test_read_token_on_admin_endpoint_is_403(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, headers=READ)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


def test_extender_token_cannot_read_recommendations(client: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {EXTENDER_TOKEN}"}
    assert client.get("/v1/recommendations/power-caps", headers=headers).status_code == 403


def test_admin_token_refreshes_and_refits(client: httpx.Client) -> None:
    refresh = client.post("/v1/refresh", headers=ADMIN)
    assert refresh.status_code == 200
    assert refresh.json()["power_caps"] == 32
    refit = client.post("/v1/refit", headers=ADMIN)
    assert refit.status_code == 200
    assert {m["kind"] for m in refit.json()["models"]} >= {"power", "cap_response"}


def test_power_caps_list_every_gpu_within_its_range(client: httpx.Client) -> None:
    body = client.get("/v1/recommendations/power-caps", headers=READ).json()
    assert body["count"] == len(body["items"]) == 32
    for item in body["items"]:
        assert item["zone"] in ("z1", "z2") and item["cluster"] == "sim"
        limit = item["recommended_limit_w"]
        assert limit is None or item["min_limit_w"] <= limit <= item["max_limit_w"]
        assert limit is not None or item["reason"].startswith("no recommendation")
    assert any(i["recommended_limit_w"] is not None for i in body["items"])


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"zone": "z1"}, lambda i: i["zone"] == "z1"),
        ({"host": "sim-r02-n03"}, lambda i: i["host"] == "sim-r02-n03"),
        (
            {"zone": "z2", "host": ["sim-r02-n01", "sim-r01-n01"]},
            lambda i: i["host"] == "sim-r02-n01",
        ),
    ],
)
def test_power_cap_filters_select_only_matching_gpus(
    client: httpx.Client,
    params: dict[str, str | list[str]],
    check: Callable[[dict[str, object]], bool],
) -> None:
    response = client.get("/v1/recommendations/power-caps", headers=READ, params=params)
    items = response.json()["items"]
    assert items and all(check(i) for i in items)


def test_filter_on_unknown_host_is_an_empty_list(client: httpx.Client) -> None:
    body = client.get(
        "/v1/recommendations/power-caps", headers=READ, params={"host": "nope"}
    ).json()
    assert body["count"] == 0 and body["items"] == []


def test_cooling_has_one_recommendation_per_zone_within_limits(client: httpx.Client) -> None:
    body = client.get("/v1/recommendations/cooling", headers=READ).json()
    assert sorted(i["zone"] for i in body["items"]) == ["z1", "z2"]
    for item in body["items"]:
        assert item["predicted_max_inlet_c"] <= item["max_inlet_limit_c"]
        assert (
            abs(item["recommended_setpoint_c"] - item["current_setpoint_c"]) <= item["max_step_c"]
        )
    one = client.get("/v1/recommendations/cooling", headers=READ, params={"zone": "z2"}).json()
    assert [i["zone"] for i in one["items"]] == ["z2"]


def test_models_report_their_accuracy(client: httpx.Client) -> None:
    models = client.get("/v1/models", headers=READ).json()["models"]
    power = next(m for m in models if m["kind"] == "power")
    assert power["samples"] > 0 and power["errors"]["mape_pct"] >= 0


def test_placement_ranks_free_gpus_and_gives_a_slurm_nodelist(client: httpx.Client) -> None:
    response = client.post("/v1/placement", headers=READ, json={"gpus": 1, "zone": "z1"})
    assert response.status_code == 200
    body = response.json()
    assert body["candidates"], body
    assert all(c["zone"] == "z1" and len(c["gpus"]) == 1 for c in body["candidates"])
    hosts = [c["host"] for c in body["candidates"]]
    assert len(hosts) == len(set(hosts)) and len(hosts) > 1
    # A 1-GPU job runs on one node: the nodelist is the best candidate's, not the ranking's.
    assert body["nodelist"] == hosts[0]


def test_placement_excludes_the_hosts_it_is_told_to(client: httpx.Client) -> None:
    first = client.post("/v1/placement", headers=READ, json={"gpus": 1}).json()
    best = first["candidates"][0]["host"]
    again = client.post("/v1/placement", headers=READ, json={"gpus": 1, "exclude_hosts": [best]})
    assert best not in [c["host"] for c in again.json()["candidates"]]


@pytest.mark.parametrize(
    ("content", "status", "error"),
    [
        (b'{"gpus": 2', 400, "malformed JSON"),
        (b"not json at all", 400, "malformed JSON"),
        (b'{"gpus": "two"}', 422, "invalid request"),
        (b'{"gpus": 0}', 422, "invalid request"),
        (b'{"gpus": 1, "colour": "red"}', 422, "invalid request"),
        (b"[1, 2]", 422, "invalid request"),
        (b'{"gpus": 1, "expected_power_w": -5}', 422, "invalid request"),
        (b"", 422, "invalid request"),
        (b'{"gpus": 1, "workload_class": "training", "job": "4711"}', 422, "invalid request"),
        (b'{"gpus": true}', 422, "invalid request"),  # was taken as 1 GPU
        (b'{"gpus": "1"}', 422, "invalid request"),  # was taken as 1 GPU
        (b'{"gpus": 1.0}', 422, "invalid request"),
    ],
)
def test_bad_placement_bodies_are_4xx_json_naming_the_problem(
    client: httpx.Client, content: bytes, status: int, error: str
) -> None:
    headers = {**READ, "Content-Type": "application/json"}
    response = client.post("/v1/placement", headers=headers, content=content)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error and body["detail"]


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_placement_body_that_does_not_say_it_is_json_is_415(
    client: httpx.Client, kind: str | None
) -> None:
    headers = {**READ, **({"Content-Type": kind} if kind else {})}
    response = client.post("/v1/placement", headers=headers, content=b'{"gpus": 1}')
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported media type"


def test_placement_body_problems_name_the_field_and_the_rule(client: httpx.Client) -> None:
    response = client.post("/v1/placement", headers=READ, json={"gpus": 0, "zone": 7})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(d.startswith("body.gpus:") and "greater than or equal to 1" in d for d in detail)
    assert any(d.startswith("body.zone:") and "string" in d for d in detail)
    both = client.post(
        "/v1/placement", headers=READ, json={"gpus": 1, "job": "7", "workload_class": "x"}
    )
    assert any("not both" in d for d in both.json()["detail"])


def test_wrong_query_type_and_unknown_path_are_json_4xx(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here", headers=READ)
    assert missing.status_code == 404 and missing.json()["error"] == "not found"
    wrong_method = client.delete("/v1/models", headers=READ)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method not allowed"


def test_metrics_are_prometheus_text_from_a_private_registry(
    client: httpx.Client, engine: Engine
) -> None:
    client.get("/v1/recommendations/power-caps", headers=READ)
    text = client.get("/metrics", headers=READ).text
    plans = float(len(engine.snapshot.budget))
    assert f'wattwise_optimizer_recommendations{{kind="power_budget"}} {plans}' in text
    assert (
        'wattwise_api_requests_total{route="/v1/recommendations/power-caps",status="200"}' in text
    )
    assert 'wattwise_optimizer_recommendations{kind="power_cap"} 32.0' in text
    # the global registry's process collectors are not in a private registry
    assert "process_cpu_seconds_total" not in text


def test_openapi_document_lists_the_v1_endpoints(client: httpx.Client) -> None:
    paths = client.get("/openapi.json", headers=READ).json()["paths"]
    for path in (
        "/v1/recommendations/power-caps",
        "/v1/recommendations/cooling",
        "/v1/placement",
        "/v1/models",
        "/v1/refit",
        "/v1/refresh",
        "/v1/extender/filter",
        "/v1/extender/prioritize",
        "/v1/recommendations/power-budget",
        "/v1/power-events",
        "/v1/power-events/{event_id}",
        "/healthz",
    ):
        assert path in paths


def test_refit_while_one_runs_is_409(client: httpx.Client, engine: Engine) -> None:
    lock = engine._refit_lock  # hold it as a running refit would
    with lock:
        response = client.post("/v1/refit", headers=ADMIN)
    assert response.status_code == 409 and response.json()["error"] == "busy"


def _pod(gpus: int) -> dict[str, object]:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"cpu": "4"}}
    return {
        "metadata": {"name": "train-0", "namespace": "ml", "uid": "4f1c"},
        "spec": {"containers": [{"name": "main", "image": "train:1", "resources": resources}]},
    }


def _node(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"nvidia.com/gpu": "4", "cpu": "64"}},
    }


HOSTS = ["sim-r01-n01", "sim-r01-n02", "sim-r02-n01", "sim-r02-n04", "not-monitored"]
EXTENDER = {"Authorization": f"Bearer {EXTENDER_TOKEN}"}


def test_extender_filter_answers_a_node_list_with_items(client: httpx.Client) -> None:
    args = {
        "Pod": _pod(1),
        "Nodes": {"metadata": {"resourceVersion": "7"}, "items": [_node(h) for h in HOSTS]},
        "NodeNames": None,
    }
    response = client.post("/v1/extender/filter", headers=EXTENDER, json=args)
    assert response.status_code == 200
    body = response.json()
    kept = [i["metadata"]["name"] for i in body["Nodes"]["items"]]
    assert body["Error"] == "" and body["NodeNames"] is None
    assert set(kept) | set(body["FailedNodes"]) == set(HOSTS)
    assert "not-monitored" in body["FailedNodes"] and kept


def test_extender_filter_answers_node_names_for_a_cache_capable_scheduler(
    client: httpx.Client,
) -> None:
    args = {"Pod": _pod(1), "Nodes": None, "NodeNames": HOSTS}
    body = client.post("/v1/extender/filter", headers=EXTENDER, json=args).json()
    assert body["Nodes"] is None
    assert set(body["NodeNames"]) | set(body["FailedNodes"]) == set(HOSTS)


def test_extender_prioritize_scores_every_node_0_to_10(client: httpx.Client) -> None:
    args = {"Pod": _pod(1), "Nodes": None, "NodeNames": HOSTS}
    response = client.post("/v1/extender/prioritize", headers=EXTENDER, json=args)
    assert response.status_code == 200
    scores = {p["Host"]: p["Score"] for p in response.json()}
    assert set(scores) == set(HOSTS) and all(0 <= s <= 10 for s in scores.values())
    assert scores["not-monitored"] == 0 and max(scores.values()) == 10


def test_extender_semantic_problem_is_200_with_its_error_field(client: httpx.Client) -> None:
    args = {"Pod": "not a pod", "Nodes": None, "NodeNames": None}
    response = client.post("/v1/extender/filter", headers=EXTENDER, json=args)
    assert response.status_code == 200
    assert response.json()["Error"].startswith("wattwise:")


def _pod_with(limit: object, annotations: dict[str, object] | None = None) -> dict[str, object]:
    pod = _pod(1)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = limit  # type: ignore[index]
    if annotations is not None:
        pod["metadata"]["annotations"] = annotations  # type: ignore[index]
    return pod


@pytest.mark.parametrize(
    "pod",
    [
        _pod_with("1" * 5000),  # int() refuses 5,000 digits: was a 500 and a traceback
        _pod_with("1", {"wattwise.io/expected-power-w": ["300"]}),  # float(list): was a 500
        _pod_with("1", {"wattwise.io/expected-power-w": 300}),  # annotations are strings
        _pod_with("100000"),
    ],
    ids=["5000-digit-gpus", "list-annotation", "number-annotation", "100000-gpus"],
)
def test_extender_request_the_scheduler_got_wrong_is_never_a_500(
    client: httpx.Client, pod: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    args = {"Pod": pod, "Nodes": None, "NodeNames": HOSTS}
    filtered = client.post(f"/v1/extender/k/{EXTENDER_TOKEN}/filter", json=args)
    scored = client.post(f"/v1/extender/k/{EXTENDER_TOKEN}/prioritize", json=args)
    # The filter answers in the protocol's own error form; prioritize has none: 400.
    assert filtered.status_code == 200 and filtered.json()["Error"].startswith("wattwise:")
    assert scored.status_code == 400 and "not a valid ExtenderArgs" in scored.json()["detail"]
    assert "Traceback" not in caplog.text and EXTENDER_TOKEN not in caplog.text


def test_extender_client_gone_mid_body_is_logged_without_its_path_token(
    api: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = httpx.URL(api)
    path = f"/v1/extender/k/{EXTENDER_TOKEN}/filter"
    with caplog.at_level(logging.INFO, logger="wattwise.optimizer.service.errors"):
        with socket.create_connection((parts.host, parts.port)) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n{".encode()
            )
            time.sleep(0.5)  # the server is reading the body when the client goes
        deadline = time.monotonic() + 30
        while "went away" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "/v1/extender/k/***/filter" in caplog.text
    assert EXTENDER_TOKEN not in caplog.text


def test_redaction_reaches_the_text_of_a_logged_exception() -> None:
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "failed", None, None)
    try:
        raise ValueError(f"bad path /v1/extender/k/{EXTENDER_TOKEN}/filter")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactPathTokens().filter(record)
    text = logging.Formatter().format(record)
    assert EXTENDER_TOKEN not in text and "/v1/extender/k/***/filter" in text


def test_extender_works_with_the_token_in_the_url_path(client: httpx.Client) -> None:
    # kube-scheduler cannot send headers: urlPrefix carries the token
    args = {"Pod": _pod(1), "Nodes": None, "NodeNames": HOSTS}
    ok = client.post(f"/v1/extender/k/{EXTENDER_TOKEN}/filter", json=args)
    assert ok.status_code == 200 and ok.json()["Error"] == ""
    wrong = client.post("/v1/extender/k/guess/prioritize", json=args)
    assert wrong.status_code == 401
    read_token = client.post(f"/v1/extender/k/{READ_TOKEN}/filter", json=args)
    assert read_token.status_code == 403


def test_path_tokens_are_redacted_from_access_logs() -> None:

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s"',
        ("1.2.3.4", "POST", "/v1/extender/k/s3cret/filter"),
        None,
    )
    RedactPathTokens().filter(record)
    assert "s3cret" not in record.getMessage()


def test_placement_explains_rejections_only_when_asked(client: httpx.Client) -> None:
    body = {"gpus": 4}
    plain = client.post("/v1/placement", headers=READ, json=body).json()
    explained = client.post("/v1/placement?explain=true", headers=READ, json=body).json()
    assert plain["rejected"] == {}
    assert explained["rejected"] and all(explained["rejected"].values())


def test_models_lists_every_version_the_registry_keeps(
    twin_data: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = twin_data
    store = EmbeddedSqliteStore(path)
    engine = Engine(
        store, config(**{"models.registry_dir": tmp_path / "models"}), ManualClock(end_ns)
    )
    engine.refit()
    engine.refit()
    with serve(create_app(engine, engine.config)) as url:
        body = httpx.get(f"{url}/v1/models", headers=READ, timeout=30).json()
    store.close()
    power = [m for m in body["models"] if m["kind"] == "power"]
    assert sorted(m["version"] for m in power) == [1, 2]
    assert all(m["samples"] > 0 and m["window_end_ns"] > m["window_start_ns"] for m in power)


def test_read_between_new_snapshot_and_its_listener_rebuilt_the_view_on_the_event_loop(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh installs its snapshot, then its listeners build the view. A read in
    between used to build the 1,000-node view itself, on the event loop, stalling every
    request; it must answer from the view already built until the listener's is ready."""
    first = engine.snapshot if engine.ready else engine.refresh()
    views = ViewCache(engine)
    views.rebuild(first)
    built = views.get()
    newer = replace(first, computed_at_ns=first.computed_at_ns + 1)
    monkeypatch.setattr(engine, "_snapshot", newer)
    assert views.get() is built
    views.rebuild(newer)
    assert views.get().computed_at_ns == newer.computed_at_ns


def test_store_answering_junk_is_a_502_saying_what_was_wrong_not_an_empty_fleet() -> None:
    junk = Answer(200, {"Content-Type": "application/json"}, b"[1,2,3]")
    with http_peer([junk]) as peer:
        store = InfluxStore(peer.url, database="wattwise")
        engine = Engine(store, config(), ManualClock())
        with serve(create_app(engine, engine.config)) as url:
            refresh = httpx.post(f"{url}/v1/refresh", headers=ADMIN, timeout=30)
            caps = httpx.get(f"{url}/v1/recommendations/power-caps", headers=READ, timeout=30)
            health = httpx.get(f"{url}/healthz", timeout=30).json()
        store.close()
    assert refresh.status_code == 502
    assert refresh.json()["error"] == "store refused the query"
    assert "not an InfluxDB query result" in refresh.json()["detail"]
    assert caps.status_code == 503 and health["ready"] is False


def _at(engine: Engine, minutes: float) -> str:
    """The engine's time plus ``minutes`` as the API takes it (UTC, ``Z``)."""
    return iso(engine.clock.time_ns() + int(minutes * 60e9))


def _event_body(engine: Engine, **changes: object) -> dict[str, object]:
    body = {
        "scope": "rack:r01",
        "limit_w": 1000.0,
        "start": _at(engine, -1),
        "end": _at(engine, 60),
        "reason": "feed B maintenance",
    }
    return {**body, **changes}


def test_power_event_added_is_listed_kept_in_the_store_planned_and_cancelled(
    client: httpx.Client, engine: Engine, twin_data: tuple[Path, int]
) -> None:
    added = client.post("/v1/power-events", headers=ADMIN, json=_event_body(engine))
    assert added.status_code == 201, added.text
    event = added.json()
    assert event["scope"] == "rack:r01" and event["limit_w"] == 1000.0
    assert event["start"] == _at(engine, -1) and event["end"] == _at(engine, 60)
    assert event["state"] == "active" and event["cancelled_at"] is None
    assert event["reason"] == "feed B maintenance" and len(event["id"]) == 32
    assert client.get(f"/v1/power-events/{event['id']}", headers=READ).json() == event
    listed = client.get("/v1/power-events", headers=READ).json()
    assert event in listed["items"] and listed["count"] == len(listed["items"])
    # The planner sees the events the API manages, and Grafana the store's point.
    assert isinstance(engine.events, EventBook)
    assert [e.id for e in engine.events.active(engine.clock.time_ns())] == [event["id"]]
    (point,) = [
        p
        for p in EmbeddedStore(twin_data[0]).latest("power_event")
        if p.tags["event"] == event["id"]
    ]
    assert point.tags["scope"] == "rack:r01" and point.fields["limit_w"] == 1000.0
    assert point.fields["cancelled"] == 0

    refresh = client.post("/v1/refresh", headers=ADMIN).json()
    assert refresh["power_budget"] == len(engine.snapshot.budget)
    budget = client.get(
        "/v1/recommendations/power-budget", headers=READ, params={"scope": "rack:r01"}
    ).json()
    assert budget["count"] == 1
    (plan,) = budget["items"]
    assert plan["scope"] == "rack:r01" and plan["event_id"] == event["id"]
    assert plan["limit_w"] == 1000.0

    cancelled = client.delete(f"/v1/power-events/{event['id']}", headers=ADMIN)
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["cancelled_at"]
    again = client.delete(f"/v1/power-events/{event['id']}", headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert "cancelled" in again.json()["detail"]
    ids = [e["id"] for e in client.get("/v1/power-events", headers=READ).json()["items"]]
    assert event["id"] not in ids
    every = client.get("/v1/power-events", headers=READ, params={"all": "true"}).json()
    assert event["id"] in [e["id"] for e in every["items"]]
    client.post("/v1/refresh", headers=ADMIN)
    after = client.get(
        "/v1/recommendations/power-budget", headers=READ, params={"scope": "rack:r01"}
    ).json()
    assert after["count"] == 0  # no budget is configured for rack:r01: the plan went


def test_power_budget_plans_filter_by_host_to_that_hosts_caps(
    client: httpx.Client, engine: Engine
) -> None:
    body = _event_body(engine, scope="zone:z1", limit_w=7500.0)
    event = client.post("/v1/power-events", headers=ADMIN, json=body).json()
    try:
        client.post("/v1/refresh", headers=ADMIN)
        every = client.get("/v1/recommendations/power-budget", headers=READ).json()
        (plan,) = [p for p in every["items"] if p["scope"] == "zone:z1"]
        assert plan["planned"] is True and plan["feasible"] is True, plan["reason"]
        assert len({c["host"] for c in plan["caps"]}) > 1, plan["reason"]
        host = plan["caps"][0]["host"]
        mine = client.get(
            "/v1/recommendations/power-budget", headers=READ, params={"host": host}
        ).json()
        (only,) = [p for p in mine["items"] if p["scope"] == "zone:z1"]
        assert only["caps"] == [c for c in plan["caps"] if c["host"] == host]
        assert {k: v for k, v in only.items() if k != "caps"} == {
            k: v for k, v in plan.items() if k != "caps"
        }
        none = client.get(
            "/v1/recommendations/power-budget", headers=READ, params={"host": "nope"}
        ).json()
        assert none["count"] == 0 and none["items"] == []
    finally:
        client.delete(f"/v1/power-events/{event['id']}", headers=ADMIN)
        client.post("/v1/refresh", headers=ADMIN)


def test_unknown_power_event_is_a_json_404(client: httpx.Client) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(
            method, "/v1/power-events/" + "0" * 32, headers=ADMIN if method == "DELETE" else READ
        )
        assert response.status_code == 404 and response.json()["error"] == "not found"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"scope": "row 3"}, "scope", "pattern"),
        ({"scope": "rack:"}, "scope", "pattern"),
        ({"limit_w": 0}, "limit_w", "greater than 0"),
        ({"limit_w": "500"}, "limit_w", "number"),
        ({"start": "2024-05-02T10:00:00"}, "start", "timezone"),
        ({"end": "tomorrow"}, "end", "datetime"),
        ({"end": 1714644000}, "end", "datetime"),
        ({"reason": 5}, "reason", "string"),
        ({"extra": 1}, "extra", "not permitted"),
        ({"scope": None}, "scope", "string"),
    ],
)
def test_bad_power_event_bodies_are_422_naming_the_field(
    client: httpx.Client, engine: Engine, changes: dict[str, object], field: str, words: str
) -> None:
    response = client.post("/v1/power-events", headers=ADMIN, json=_event_body(engine, **changes))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid request"
    assert any(d.startswith(f"body.{field}:") and words in d for d in body["detail"]), body


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        (10, 5, "after start"),
        (-120, -60, "in the past"),
        (0, 400 * 24 * 60, "days ahead"),
    ],
)
def test_power_event_times_that_make_no_window_are_422_naming_end(
    client: httpx.Client, engine: Engine, start: int, end: int, words: str
) -> None:
    body = _event_body(engine, start=_at(engine, start), end=_at(engine, end))
    response = client.post("/v1/power-events", headers=ADMIN, json=body)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem.startswith("body.end:") and words in problem


@pytest.mark.parametrize(
    ("field", "escape", "status"),
    [
        ("scope", "\\u0007", 422),  # a control character would reach a store tag
        ("reason", "\\t", 422),
        ("reason", "\\ud800", 400),  # a lone surrogate: JSON's parser refuses it
    ],
)
def test_text_that_is_not_one_printable_line_is_4xx_not_a_500(
    client: httpx.Client, engine: Engine, field: str, escape: str, status: int
) -> None:
    body = json.dumps(_event_body(engine, **{field: "rack:r01-PLACE"}))
    raw = body.replace("PLACE", escape).encode()
    response = client.post(
        "/v1/power-events", headers={**ADMIN, "Content-Type": "application/json"}, content=raw
    )
    assert response.status_code == status
    if status == 422:
        assert response.json()["detail"][0].startswith(f"body.{field}:")


def test_a_missing_field_and_a_body_not_sent_as_json_are_refused(
    client: httpx.Client, engine: Engine
) -> None:
    body = _event_body(engine)
    del body["limit_w"]
    missing = client.post("/v1/power-events", headers=ADMIN, json=body)
    assert missing.status_code == 422
    assert any(d.startswith("body.limit_w:") for d in missing.json()["detail"])
    text = client.post("/v1/power-events", headers=ADMIN, content=b"scope=site")
    assert text.status_code == 415


def test_an_event_is_planned_its_lead_before_it_starts_and_not_earlier(
    client: httpx.Client, engine: Engine
) -> None:
    """Appliers poll every minute: an event's caps are planned ``event_lead_s`` (90 s)
    ahead, so that they are in place when it starts."""
    assert engine.config.budgets.event_lead_s == 90.0
    soon = client.post(
        "/v1/power-events", headers=ADMIN, json=_event_body(engine, start=_at(engine, 1))
    )
    later = client.post(
        "/v1/power-events",
        headers=ADMIN,
        json=_event_body(engine, scope="rack:r02", start=_at(engine, 2)),
    )
    assert soon.status_code == later.status_code == 201
    assert soon.json()["state"] == "scheduled"
    client.post("/v1/refresh", headers=ADMIN)
    plans = client.get("/v1/recommendations/power-budget", headers=READ).json()["items"]
    by_event = {p["event_id"]: p for p in plans if p["event_id"]}
    assert set(by_event) == {soon.json()["id"]}
    assert by_event[soon.json()["id"]]["scope"] == "rack:r01"


def test_power_budget_before_the_first_refresh_is_503_as_other_reads(
    twin_data: tuple[Path, int],
) -> None:
    path, end_ns = twin_data
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(), ManualClock(end_ns))
    with serve(create_app(engine, engine.config)) as url:
        budget = httpx.get(f"{url}/v1/recommendations/power-budget", headers=READ, timeout=30)
        caps = httpx.get(f"{url}/v1/recommendations/power-caps", headers=READ, timeout=30)
    store.close()
    assert budget.status_code == caps.status_code == 503
    assert budget.json() == caps.json()


def test_the_app_shares_its_event_book_with_the_engine(tmp_path: Path) -> None:
    clock = ManualClock()
    store = EmbeddedSqliteStore(tmp_path / "store.sqlite")
    book = EventBook(tmp_path / "events.json", clock)
    given = Engine(store, config(), clock, events=book)
    create_app(given, given.config)
    assert given.events is book
    bare = Engine(store, config(), clock)
    create_app(bare, bare.config)
    assert isinstance(bare.events, EventBook) and bare.events.path is None
    store.close()
