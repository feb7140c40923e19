"""Bearer tokens with scopes, configured as SHA-256 hashes and compared in constant time.

A request's token is hashed once and its digest compared with every configured
digest (``hmac.compare_digest``, all of them each time): neither which token
matched nor how much of one did shows in the timing. A handful of 32-byte
comparisons and one SHA-256 cost about a microsecond, so nothing is cached and
no presented token is kept. ``admin`` includes ``read``; ``extender`` is only
good for the scheduler-extender endpoints.

kube-scheduler's extender configuration (``urlPrefix``, ``enableHTTPS``,
``tlsConfig``, ``httpTimeout``, …) cannot send headers, so it cannot send a
bearer token: an ``extender`` token may instead be the path segment after
``/v1/extender/k/`` in its ``urlPrefix`` (see docs/api.md). :class:`RedactPathTokens`
keeps such tokens out of access logs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from wattwise.optimizer.service.settings import ApiToken

IMPLIED = {"admin": {"admin", "read"}, "read": {"read"}, "extender": {"extender"}}
_PATH_TOKEN = re.compile(r"(/v1/extender/k/)[^/\s]+")


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    name: str
    scopes: frozenset[str]


class TokenTable:
    """The configured tokens, looked up by the SHA-256 of what a client presents."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._digests = tuple(
            (bytes.fromhex(t.sha256), Principal(t.name, _expand(t.scopes))) for t in tokens
        )

    def lookup(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for configured, principal in self._digests:
            # every digest is compared, so the time taken does not say which one matched
            if hmac.compare_digest(digest, configured):
                found = principal
        return found


def _expand(scopes: Sequence[str]) -> frozenset[str]:
    return frozenset(s for scope in scopes for s in IMPLIED[scope])


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="wattwise"'})


def bearer_token(request: HTTPConnection) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def check(principal: Principal | None, scope: str) -> Principal:
    if principal is None:
        raise unauthorized("the token is not valid")
    if scope not in principal.scopes:
        raise HTTPException(403, f"the token of {principal.name!r} lacks the {scope!r} scope")
    return principal


class BearerScope(HTTPBearer):
    """A dependency admitting bearer tokens that carry ``scope``.

    It is FastAPI's ``HTTPBearer`` for the OpenAPI document (the same ``HTTPBearer``
    security scheme on every protected operation) but checks the token itself, in one
    coroutine: a plain ``def`` dependency would cost every request a hop to the thread
    pool, and a nested one a second round of dependency solving.
    """

    def __init__(self, table: TokenTable, scope: str) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="a token configured under [api] tokens",
        )
        self.table = table
        self.scope = scope

    async def __call__(self, request: HTTPConnection) -> Principal:  # type: ignore[override]
        return check(self.table.lookup(bearer_token(request)), self.scope)


def redact_paths(text: str) -> str:
    """``text`` with every extender path token masked."""
    return _PATH_TOKEN.sub(r"\1***", text)


class RedactPathTokens(logging.Filter):
    """Replace extender path tokens in log records: in the message, its arguments and the
    text of an exception it carries (uvicorn's access and error logs show paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_paths(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact_paths(str(record.msg))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_paths(record.exc_text)
        return True
