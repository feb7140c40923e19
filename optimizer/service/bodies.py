"""JSON request bodies validated in one pass of pydantic-core over the raw bytes.

FastAPI's own body handling decodes the JSON into Python objects, validates them
through its field machinery and, for the placement endpoint, the recommender then
validated the dump again: about a third of a placement's cost in the endpoint. Here
``model_validate_json`` parses and validates in one go, problems are raised as the
same :class:`RequestValidationError` FastAPI raises (so :mod:`.errors` answers them:
400 for malformed JSON, 422 for a body that breaks the schema), and the OpenAPI
document gets the request body FastAPI would have written.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Body = TypeVar("Body", bound=BaseModel)


def parse_json_body(model: type[Body], raw: bytes) -> Body:
    """``raw`` as ``model``; errors located under ``body`` as FastAPI locates them."""
    if not raw.strip():
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        problems = [
            {**error, "loc": ("body", *error["loc"])}
            for error in e.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(problems) from e


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with :func:`parse_json_body`.

    The schema is inlined, so ``model`` must be flat: a nested model's ``$ref`` would
    point at nothing in the OpenAPI document."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise TypeError(f"{model.__name__} nests models; json_body inlines flat ones only")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }
