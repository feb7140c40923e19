"""JSON request bodies validated in one pass of pydantic-core over the raw bytes.

Bodies are read by the endpoint, after its token dependency, so an unauthenticated
request is refused before any of its body is read (and :mod:`.limits` caps it). A
body must say it is JSON (``Content-Type: application/json``, else 415), is parsed
off the event loop when large, and is validated strictly: ``"gpus": true`` or
``"gpus": "1"`` is not a number of GPUs.

FastAPI's own body handling decodes the JSON into Python objects, validates them
through its field machinery and, for the placement endpoint, the recommender then
validated the dump again: about a third of a placement's cost in the endpoint. Here
``model_validate_json`` parses and validates in one go, problems are raised as the
same :class:`RequestValidationError` FastAPI raises (so :mod:`.errors` answers them:
400 for malformed JSON, 422 for a body that breaks the schema), and the OpenAPI
document gets the request body FastAPI would have written.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

Body = TypeVar("Body", bound=BaseModel)

PARSE_ON_LOOP_BYTES = 64 * 1024
"""Bodies larger than this are parsed on a worker thread: parsing holds the event loop,
and every other request (``/healthz`` included) with it."""


async def json_bytes(request: Request) -> bytes:
    """The body of a request that says it is JSON (415 otherwise)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise HTTPException(
            415, f"the body must be JSON sent as Content-Type: application/json, not {kind!r}"
        )
    return await request.body()


async def read_model(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``, validated strictly."""
    raw = await json_bytes(request)
    if len(raw) > PARSE_ON_LOOP_BYTES:
        return await run_in_threadpool(parse_json_body, model, raw)
    return parse_json_body(model, raw)


async def read_json(request: Request) -> Any:
    """The request's JSON body as Python values (malformed JSON is a 400)."""
    raw = await json_bytes(request)
    if len(raw) > PARSE_ON_LOOP_BYTES:
        return await run_in_threadpool(_loads, raw)
    return _loads(raw)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"Invalid JSON: {e}"}]
        ) from e


def parse_json_body(model: type[Body], raw: bytes) -> Body:
    """``raw`` as ``model``, strictly; errors located under ``body`` as FastAPI locates them."""
    if not raw.strip():
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return model.model_validate_json(raw, strict=True)
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
