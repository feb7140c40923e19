"""The one mapping from errors to HTTP answers: ``{"error": …, "detail": …}`` JSON, always.

Bad input (malformed JSON, wrong types, values out of range, a power event
that ends in the past) is a 4xx; the store being down, the first refresh
pending or the events file unwritable is a 503; a refit already running, or
cancelling a power event that is over, is a 409. Endpoints raise and let this
module answer, so no endpoint carries its own try/except.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from wattwise.errors import (
    Busy,
    ConfigError,
    NotReady,
    StoreAuthError,
    StoreError,
    StoreQueryError,
    WattwiseError,
)
from wattwise.optimizer.service.auth import redact_paths
from wattwise.optimizer.service.power_events import (
    EventConflict,
    EventsNotSaved,
    InvalidEvent,
    UnknownEvent,
)

log = logging.getLogger(__name__)

STATUS_OF: tuple[tuple[type[WattwiseError], int, str], ...] = (
    (ConfigError, 400, "invalid setting"),
    (InvalidEvent, 422, "invalid request"),
    (UnknownEvent, 404, "not found"),
    (EventConflict, 409, "conflict"),
    (EventsNotSaved, 503, "events not saved"),
    (Busy, 409, "busy"),
    (NotReady, 503, "not ready"),
    (StoreAuthError, 502, "store refused the optimizer's credentials"),
    (StoreQueryError, 502, "store refused the query"),
    (StoreError, 503, "store unavailable"),
)
ERROR_OF_STATUS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    409: "busy",
    413: "too large",
    415: "unsupported media type",
    422: "invalid request",
}


def error_body(error: str, detail: object) -> dict[str, object]:
    return {"error": error, "detail": detail}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(WattwiseError, _wattwise_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected_error)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = ERROR_OF_STATUS.get(exc.status_code, "error")
    return JSONResponse(
        error_body(error, exc.detail), status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return JSONResponse(error_body("malformed JSON", _describe(problems)), status_code=400)
    return JSONResponse(error_body("invalid request", _describe(problems)), status_code=422)


def _describe(problems: Sequence[dict[str, Any]]) -> list[str]:
    """``body.gpus: Input should be greater than 0`` per problem, without echoing input."""
    out = []
    for p in problems:
        where = ".".join(str(part) for part in p.get("loc", ()))
        out.append(f"{where}: {p.get('msg', 'invalid')}")
    return out


async def _wattwise_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, error in STATUS_OF:
        if isinstance(exc, kind):
            return JSONResponse(error_body(error, _detail(exc)), status_code=status)
    log.error("request %s failed: %s", redact_paths(request.url.path), exc)
    return JSONResponse(error_body("optimizer error", str(exc)), status_code=500)


def _detail(exc: Exception) -> object:
    # A refused value is located as a body that breaks the schema is: ["body.end: …"].
    if isinstance(exc, InvalidEvent):
        return [f"body.{exc.field}: {exc.problem}"]
    return str(exc)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection (or was timed out) before its body arrived:
    # nobody is left to answer, and nothing failed here.
    log.info(
        "request %s: the client went away before its body arrived", redact_paths(request.url.path)
    )
    return Response(status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request %s failed unexpectedly", redact_paths(request.url.path), exc_info=exc)
    return JSONResponse(
        error_body("internal error", "the optimizer failed; its log says why"), status_code=500
    )
