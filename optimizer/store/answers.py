"""What an InfluxDB ``/query`` answer means: HTTP statuses, JSON documents (one per
chunk when streamed), errors and truncation, as :class:`~wattwise.errors.StoreError`s.

An answer that is not shaped like a query result (``[1,2,3]``, a series without
``values``, rows of the wrong length, a retention policy without a name) is the
store refusing the query, never an empty fleet and never a ``KeyError``: reads
interpret answers inside :func:`malformed_answers`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from wattwise.errors import StoreAuthError, StoreQueryError, StoreUnavailable


class MalformedAnswer(StoreQueryError):
    """The store answered something that is not a query result."""


def raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status == 200:
        return
    reason = error_text(response)
    if status in (401, 403):
        raise StoreAuthError(f"{url}: HTTP {status}: {reason} (check the credentials)")
    if status == 429 or status >= 500:
        raise StoreUnavailable(f"{url}: HTTP {status}: {reason}")
    raise StoreQueryError(f"{url}: HTTP {status}: {reason}")


def json_document(text: str, url: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise StoreQueryError(f"{url}: the answer is not JSON: {text[:200]!r}") from e


def checked(body: Any, url: str) -> list[dict[str, Any]]:
    """The results of one answer (or chunk of one), raising the first error among them."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise StoreQueryError(f"{url}: {body['error']}")
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise MalformedAnswer(f"{url}: the answer is not an InfluxDB query result: {_shown(body)}")
    for result in results:
        if "error" in result:
            raise StoreQueryError(f"{url}: {result['error']}")
    return results


def refuse_cut_short(results: list[dict[str, Any]], url: str) -> None:
    if any(result.get("partial") for result in results):
        raise StoreQueryError(
            f"{url}: the answer was cut short (max-row-limit): ask for a shorter window "
            "or a longer every_s"
        )


def series_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [series for result in results for series in result.get("series") or []]


@contextmanager
def malformed_answers(url: str) -> Iterator[None]:
    """A part of an answer missing or of the wrong type is a StoreQueryError saying so."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise MalformedAnswer(
            f"{url}: the answer is not an InfluxDB query result ({type(e).__name__}: {e})"
        ) from e


def _shown(body: Any) -> str:
    return json.dumps(body)[:200]


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:500]
    return str(body)[:500]
