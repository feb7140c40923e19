"""What a Prometheus HTTP API answer means: statuses and errors as
:class:`~wattwise.errors.StoreError`, and the series of a matrix or vector as arrays.

A fleet's answer holds millions of ``[time, "value"]`` pairs; ``json.loads`` would
make three Python objects of each, so the series of a successful answer are cut
out of the text and their values read by NumPy, with only each series' labels
going through ``json``. The answer's shape is checked as it is cut: anything but
``{"status":"success","data":{"resultType":…,"result":[{"metric":…,"value(s)":…}]}}``
is a :class:`~wattwise.errors.StoreQueryError`, never a wrong number.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from wattwise.errors import StoreAuthError, StoreQueryError, StoreUnavailable
from wattwise.optimizer.store.answers import MalformedAnswer
from wattwise.optimizer.telemetry import Floats

_METRIC = '{"metric":'
_VALUES = '"values":['
_VALUE = '"value":['


@dataclass(frozen=True)
class Answer:
    """One series of a query's answer: its labels, times (s) and values."""

    labels: dict[str, str]
    time_s: Floats
    values: Floats


@contextmanager
def malformed_answers(url: str) -> Iterator[None]:
    """A part of an answer missing or of the wrong type (label values that are not a list,
    a count that is not a number) is the store refusing the query, never a ``KeyError``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise MalformedAnswer(
            f"{url}: the answer is not a Prometheus query result ({type(e).__name__}: {e})"
        ) from e


def raise_for_status(response: httpx.Response, url: str) -> None:
    """Prometheus answers 400 (bad query), 422 (cannot run it), 503 (overloaded, timed out)."""
    status = response.status_code
    if status == 200:
        return
    reason = _error_text(response)
    if status in (401, 403):
        raise StoreAuthError(f"{url}: HTTP {status}: {reason} (check the credentials)")
    if status == 429 or status >= 500:
        raise StoreUnavailable(f"{url}: HTTP {status}: {reason}")
    raise StoreQueryError(f"{url}: HTTP {status}: {reason}")


def json_data(text: str, url: str) -> Any:
    """``data`` of a small answer (labels, series, label values) after checking ``status``."""
    try:
        body = json.loads(text)
    except ValueError as e:
        raise StoreQueryError(f"{url}: the answer is not JSON: {text[:200]!r}") from e
    if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
        raise StoreQueryError(f"{url}: not a successful Prometheus answer: {text[:300]!r}")
    return body["data"]


def series_of(text: str, url: str) -> list[Answer]:
    """Every series of a ``matrix`` (query_range) or ``vector`` (query) answer."""
    head = text[:200]
    if not head.startswith('{"status":"success"'):
        json_data(text, url)  # raises with what the server said
    start = text.find('"result":[')
    kind_at = text.find('"resultType":"')
    if start < 0 or kind_at < 0:
        raise StoreQueryError(f"{url}: no result in the answer: {head!r}")
    kind = text[kind_at + 14 : text.index('"', kind_at + 14)]
    if kind not in ("matrix", "vector"):
        raise StoreQueryError(f"{url}: a {kind} where series were expected")
    body = text[start + 10 :]
    if body.startswith("]"):
        return []
    marker = _VALUES if kind == "matrix" else _VALUE
    return [_series(piece, marker, url) for piece in body.split(_METRIC)[1:]]


def _series(piece: str, marker: str, url: str) -> Answer:
    labels_end = piece.find("}," + marker)
    if labels_end < 0:
        raise StoreQueryError(f"{url}: a series without {marker.strip(':[')}: {piece[:200]!r}")
    try:
        labels = json.loads(piece[: labels_end + 1])
    except ValueError as e:
        raise StoreQueryError(f"{url}: unreadable series labels {piece[:200]!r}") from e
    values_start = labels_end + 2 + len(marker)
    # a matrix's pairs end with "]]", a vector's one pair with "]" (nothing inside nests)
    closing = "]]" if marker == _VALUES else "]"
    values_end = piece.find(closing, values_start)
    if values_end < 0:
        raise StoreQueryError(f"{url}: a series cut short: {piece[:200]!r}")
    numbers = _numbers(piece[values_start : values_end + 1], url)
    if numbers.size % 2:
        raise StoreQueryError(f"{url}: a series with a time but no value: {piece[:200]!r}")
    # copies, so the flat array of both is freed once the caller has what it keeps
    times, values = numbers[0::2].copy(), numbers[1::2].copy()
    return Answer({str(k): str(v) for k, v in labels.items()}, times, values)


def _numbers(text: str, url: str) -> Floats:
    """``[1700000000,"312.5"],[…]`` (or one pair) as a flat array of floats."""
    flat = text.replace("[", "").replace("]", "").replace('"', "").strip(",")
    if not flat:
        return np.empty(0)
    with warnings.catch_warnings():
        # NumPy stops at the first unreadable item with a warning: make it an error
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(flat, sep=",")  # NaN, +Inf, -Inf read as such
        except (ValueError, DeprecationWarning) as e:
            raise StoreQueryError(f"{url}: unreadable values {flat[:200]!r}") from e


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("error") or body)[:500]
    return str(body)[:500]
