"""Recommendation filters read from the query string, documented as FastAPI would."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Query

from tests.optimizer.service.support import READ_TOKEN
from wattwise.optimizer.service.queries import MAX_VALUES, FilterQuery

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
Values = Annotated[list[str], Query(max_length=MAX_VALUES)]


def _fastapi_parameters() -> list[dict[str, Any]]:
    """What FastAPI itself documents for the list parameters the endpoints used to declare."""
    app = FastAPI()

    @app.get("/x")
    def x(cluster: Values = [], zone: Values = [], host: Values = []) -> None:  # noqa: B006
        return None

    parameters: list[dict[str, Any]] = app.openapi()["paths"]["/x"]["get"]["parameters"]
    return parameters


def test_openapi_documents_the_filters_as_fastapi_list_parameters() -> None:
    assert FilterQuery(("cluster", "zone", "host")).openapi()["parameters"] == (
        _fastapi_parameters()
    )


def test_served_document_describes_the_filters_of_each_read(client: httpx.Client) -> None:
    paths = client.get("/openapi.json", headers=READ).json()["paths"]
    caps = paths["/v1/recommendations/power-caps"]["get"]["parameters"]
    cooling = paths["/v1/recommendations/cooling"]["get"]["parameters"]
    assert caps == _fastapi_parameters()
    assert [p["name"] for p in cooling] == ["cluster", "zone"]


def test_repeated_filter_values_are_alternatives(client: httpx.Client) -> None:
    items = client.get("/v1/recommendations/power-caps", headers=READ).json()["items"]
    first, last = items[0]["host"], items[-1]["host"]
    answer = client.get(
        "/v1/recommendations/power-caps", params=[("host", first), ("host", last)], headers=READ
    ).json()
    assert {i["host"] for i in answer["items"]} == {first, last}
    assert answer["count"] == sum(i["host"] in (first, last) for i in items)


def test_unknown_parameters_are_ignored_as_fastapi_did(client: httpx.Client) -> None:
    everything = client.get("/v1/recommendations/cooling", headers=READ).json()
    answer = client.get("/v1/recommendations/cooling?colour=red", headers=READ)
    assert answer.status_code == 200
    assert answer.json()["count"] == everything["count"]


def test_too_many_values_of_one_filter_is_a_json_422(client: httpx.Client) -> None:
    params = {"host": [f"h{i}" for i in range(MAX_VALUES + 1)]}
    answer = client.get("/v1/recommendations/power-caps", params=params, headers=READ)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid request"
    assert body["detail"][0].startswith("query.host: List should have at most 1000 items")
