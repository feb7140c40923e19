"""The HTTP API over real HTTP: uvicorn on a free port, an engine on a twin-filled store."""

from __future__ import annotations

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
from wattwise.optimizer.service.app import ViewCache, create_app
from wattwise.optimizer.service.auth import RedactPathTokens
from wattwise.optimizer.service.engine import Engine
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


def test_read_token_on_admin_endpoint_is_403(client: httpx.Client) -> None:
    response = client.post("/v1/refresh", headers=READ)
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


def test_metrics_are_prometheus_text_from_a_private_registry(client: httpx.Client) -> None:
    client.get("/v1/recommendations/power-caps", headers=READ)
    text = client.get("/metrics", headers=READ).text
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
