"""A client of the optimizer's HTTP API, for commands an operator runs against it.

Every exchange goes through :meth:`ApiClient.call`, which turns httpx's errors and the
API's statuses into :class:`~wattwise.errors.ApiError` in one place: no answer, a
5xx or a body that is not JSON is :class:`~wattwise.errors.ApiUnavailable`; 401 and
403 are :class:`~wattwise.errors.ApiAuthError`; any other 4xx is
:class:`~wattwise.errors.ApiRefused` with the API's own ``detail`` (docs/api.md: every
error answer is ``{"error", "detail"}``). Its tests talk to a real HTTP peer.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from wattwise.common.http import deadline_client
from wattwise.common.secrets import Secret
from wattwise.errors import ApiAuthError, ApiRefused, ApiUnavailable


class ApiClient:
    """Bearer-token requests to one optimizer, each ending within ``timeout_s``."""

    def __init__(
        self,
        url: str,
        token: Secret,
        *,
        timeout_s: float = 10.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = deadline_client(
            self.url,
            timeout_s=timeout_s,
            total_s=timeout_s,
            verify=verify,
            headers={"Authorization": f"Bearer {token.reveal()}"},
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON of a 2xx answer to ``method path``; ApiError for anything else."""
        where = f"the optimizer at {self.url}"
        try:
            response = self._client.request(method, path, params=params, json=body)
        except httpx.TimeoutException as e:
            raise ApiUnavailable(f"{where} did not answer within {self.timeout_s:g} s") from e
        except httpx.HTTPError as e:
            raise ApiUnavailable(f"cannot reach {where}: {e}") from e
        status = response.status_code
        if status in (401, 403):
            raise ApiAuthError(f"{where} refused the token (HTTP {status}): {_detail(response)}")
        if 400 <= status < 500:
            raise ApiRefused(status, f"{method} {path}: {_detail(response)} (HTTP {status})")
        if not 200 <= status < 300:
            raise ApiUnavailable(f"{where} answered HTTP {status}: {_detail(response)}")
        try:
            return response.json()
        except ValueError as e:
            raise ApiUnavailable(f"{where} answered {path} with something not JSON") from e

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _detail(response: httpx.Response) -> str:
    """The API's words on an error: its ``detail`` (a string or a list of them), else
    the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return "; ".join(str(d) for d in detail)
    return str(detail) if detail else response.text[:200]
