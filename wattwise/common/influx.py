"""InfluxDB over HTTP: one transport for 1.x ``/write`` and 2.x/3.x ``/api/v2/write``.

Responses and httpx errors become :mod:`wattwise.errors` in one place,
:func:`classify_response` (and ``_post`` for transport errors):

====================  ==================================================
2xx                   delivered
400                   :class:`RejectedBatch` with InfluxDB's reason (malformed
                      line, field type conflict, points outside retention); on
                      1.x the good points of such a "partial write" are stored
401, 403              :class:`AuthError`; the sender keeps the data
404                   :class:`TransientDeliveryError` saying "not found": a
                      missing database/bucket (or a server without this API)
                      is an operator's fix, and the data must wait for it
413                   :class:`BatchTooLarge`; the sender splits the batch
429, 503              :class:`TransientDeliveryError` with ``Retry-After``
                      (seconds or an HTTP date; a value that is not a finite
                      number of seconds is ignored, and the sender caps it)
other 5xx, timeouts,  :class:`TransientDeliveryError`
connection errors,
undecodable answers
====================  ==================================================

``timeout_s`` bounds the whole request, not only each read: a server that
answers a byte at a time is abandoned when it runs out (see
:mod:`wattwise.common.http`).

Credentials travel only in the ``Authorization`` header, never in the URL,
so they cannot appear in httpx's error messages, and they are never part of
an exception, a log line or ``repr(transport)``.
"""

from __future__ import annotations

import gzip
import json
import math
import ssl
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import httpx

from wattwise.clock import Clock, SystemClock
from wattwise.common.http import deadline_client
from wattwise.common.secrets import Secret
from wattwise.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    RejectedBatch,
    TransientDeliveryError,
)

Api = Literal["v1", "v2"]

_REASON_MAX_CHARS = 2000


class InfluxTransport:
    """Writes batches of line protocol to one InfluxDB (1.x, 2.x or 3.x)."""

    def __init__(
        self,
        url: str,
        *,
        api: Api = "v1",
        database: str | None = None,
        retention_policy: str | None = None,
        username: str | None = None,
        password: Secret | None = None,
        org: str | None = None,
        bucket: str | None = None,
        token: Secret | None = None,
        timeout_s: float = 10.0,
        verify: bool = True,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        gzip_level: int = 1,
        clock: Clock | None = None,
        name: str = "influxdb",
    ) -> None:
        self.name = name
        self._url = url.rstrip("/")
        self._api = api
        self._gzip_level = gzip_level
        self._clock = clock or SystemClock()
        self._path, self._params = _endpoint(api, database, retention_policy, org, bucket)
        headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        auth: httpx.BasicAuth | None = None
        if api == "v1" and username:
            auth = httpx.BasicAuth(username, password.reveal() if password else "")
        if api == "v2" and token:
            headers["Authorization"] = f"Token {token.reveal()}"
        self._timeout_s = timeout_s
        self._client = deadline_client(
            self._url,
            headers=headers,
            auth=auth,
            timeout_s=timeout_s,
            total_s=timeout_s,
            verify=_tls_context(verify, ca_file, client_cert, client_key),
        )

    def write(self, lines: Sequence[bytes]) -> None:
        """POST ``lines`` gzip-compressed; raise a DeliveryError subclass unless stored."""
        if not lines:
            return
        body = gzip.compress(b"\n".join(lines), compresslevel=self._gzip_level)
        try:
            response = self._client.post(self._path, params=self._params, content=body)
        except httpx.TimeoutException as e:
            raise TransientDeliveryError(
                f"{self.name}: no answer within {self._timeout_s:g} s ({type(e).__name__})"
            ) from e
        except httpx.HTTPError as e:
            # Connection errors, and answers httpx cannot decode (a broken proxy's gzip).
            raise TransientDeliveryError(f"{self.name}: {type(e).__name__}: {e}") from e
        classify_response(
            response.status_code, response.headers, response.text, self._clock, where=self.name
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"InfluxTransport({self._url!r}, api={self._api!r}, params={self._params!r})"


def _endpoint(
    api: Api,
    database: str | None,
    retention_policy: str | None,
    org: str | None,
    bucket: str | None,
) -> tuple[str, dict[str, str]]:
    """The write path and query parameters for ``api`` (precision is always ns)."""
    if api == "v1":
        if not database:
            raise ConfigError("influx.database", database, "a database name for api v1")
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        return "/write", params
    if api == "v2":
        if not bucket:
            raise ConfigError("influx.bucket", bucket, "a bucket name for api v2")
        # InfluxDB 3.x ignores org; 2.x needs it.
        params = {"bucket": bucket, "precision": "ns"}
        if org:
            params["org"] = org
        return "/api/v2/write", params
    raise ConfigError("influx.api", api, "'v1' or 'v2'")


def _tls_context(
    verify: bool, ca_file: Path | None, client_cert: Path | None, client_key: Path | None
) -> ssl.SSLContext | bool:
    if client_key and not client_cert:
        raise ConfigError("influx.client_key", str(client_key), "together with client_cert")
    if not verify:
        return False
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if client_cert:
            context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    except (OSError, ssl.SSLError) as e:
        where = "influx.client_cert" if client_cert else "influx.ca_file"
        raise ConfigError(where, str(client_cert or ca_file), f"readable PEM files ({e})") from e
    return context


def classify_response(
    status: int, headers: Mapping[str, str], body: str, clock: Clock, *, where: str = "influxdb"
) -> None:
    """Return if InfluxDB stored the batch, else raise the DeliveryError that says why."""
    if 200 <= status < 300:
        return
    reason = f"{where}: HTTP {status}: {_error_text(body)}"
    if status == 400:
        raise RejectedBatch(_error_text(body))
    if status in (401, 403):
        raise AuthError(f"{reason} (check the username/password or token and its permissions)")
    if status == 404:
        raise TransientDeliveryError(
            f"{reason} (not found: create the database or bucket, or check the URL and api)"
        )
    if status == 413:
        raise BatchTooLarge(reason)
    retry_after_s = _retry_after_s(headers.get("Retry-After"), clock)
    raise TransientDeliveryError(reason, retry_after_s=retry_after_s)


def _error_text(body: str) -> str:
    """InfluxDB's reason: 1.x says ``{"error": …}``, 2.x/3.x ``{"message": …}``."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        text = parsed.get("error") or parsed.get("message")
        if isinstance(text, str):
            return text[:_REASON_MAX_CHARS]
    return body.strip()[:_REASON_MAX_CHARS] or "(empty response)"


def _retry_after_s(value: str | None, clock: Clock) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - clock.time_ns() / 1e9
        except (TypeError, ValueError, OverflowError):
            return None
    # "inf" and "nan" parse as floats; no wait can be computed from them.
    return max(0.0, seconds) if math.isfinite(seconds) else None
