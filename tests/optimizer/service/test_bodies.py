"""JSON bodies validated from raw bytes: errors located as FastAPI locates them."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from wattwise.optimizer.service.bodies import json_body, parse_json_body
from wattwise.optimizer.service.schemas import PlacementBody


def test_a_body_is_validated_into_the_model() -> None:
    body = parse_json_body(PlacementBody, b'{"gpus": 2, "exclude_hosts": ["a"]}')
    assert body.gpus == 2 and body.exclude_hosts == ("a",)


def test_problems_are_located_under_body_and_an_empty_body_is_missing() -> None:
    with pytest.raises(RequestValidationError) as bad:
        parse_json_body(PlacementBody, b'{"gpus": 0}')
    assert [e["loc"] for e in bad.value.errors()] == [("body", "gpus")]
    with pytest.raises(RequestValidationError) as empty:
        parse_json_body(PlacementBody, b"  ")
    assert [(e["type"], e["loc"]) for e in empty.value.errors()] == [("missing", ("body",))]


def test_openapi_body_is_the_models_schema_and_nested_models_are_refused() -> None:
    schema = json_body(PlacementBody)["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["gpus"] and "exclude_hosts" in schema["properties"]

    class Inner(BaseModel):
        x: int

    class Outer(BaseModel):
        inner: Inner

    with pytest.raises(TypeError, match="nests models"):
        json_body(Outer)
