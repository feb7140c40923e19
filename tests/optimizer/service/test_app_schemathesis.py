"""Property-based run of schemathesis against the live server's OpenAPI document:
whatever it sends, the API never answers with a server error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS: list[CheckFunction] = [not_a_server_error]


@pytest.fixture
def live_schema(api: str) -> OpenApiSchema:
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    return schemathesis.openapi.from_url(f"{api}/openapi.json", headers=headers, timeout=10)


def _send(client: httpx.Client, kwargs: dict[str, Any]) -> httpx.Response:
    """Send schemathesis' request with httpx (its requests transport does not work with the
    urllib3-future installed here)."""
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        body["content"] = kwargs["data"]
    return client.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
        **body,
    )


def test_no_input_makes_the_api_fail_with_a_server_error(
    live_schema: OpenApiSchema, api: str, client: httpx.Client
) -> None:
    results = list(live_schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has invalid operations"
    assert len(operations) >= 11  # every endpoint of the document is exercised

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any]) -> None:
            response = _send(client, case.as_transport_kwargs(base_url=api, headers=ADMIN))
            case.validate_response(Response.from_httpx(response, verify=True), checks=CHECKS)

        run()
