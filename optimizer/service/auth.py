"""Bearer tokens with scopes, configured as SHA-256 hashes and compared in constant time.

A request's token is hashed once and its digest looked up in a table of the
configured digests: timing can at most say how much of a *digest* matched,
which says nothing about the token behind it. ``admin`` includes
``read``; ``extender`` is only good for the scheduler-extender endpoints.

kube-scheduler's extender configuration (``urlPrefix``, ``enableHTTPS``,
``tlsConfig``, ``httpTimeout``, …) cannot send headers, so it cannot send a
bearer token: an ``extender`` token may instead be the path segment after
``/v1/extender/k/`` in its ``urlPrefix`` (see docs/api.md). :class:`RedactPathTokens`
keeps such tokens out of access logs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request

from .settings import ApiToken

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
        self._by_digest = {
            bytes.fromhex(t.sha256): Principal(t.name, _expand(t.scopes)) for t in tokens
        }

    def lookup(self, token: str) -> Principal | None:
        # One hash and one dict lookup per request (this is on every hot path). The lookup's
        # timing depends on the SHA-256 of what was sent, which says nothing about a
        # configured token: finding a prefix of its digest means inverting SHA-256.
        return self._by_digest.get(hashlib.sha256(token.encode()).digest())


def _expand(scopes: Sequence[str]) -> frozenset[str]:
    return frozenset(s for scope in scopes for s in IMPLIED[scope])


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="wattwise"'})


def bearer_token(request: Request) -> str:
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


def require(table: TokenTable, scope: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency admitting bearer tokens that carry ``scope``."""

    def dependency(request: Request) -> Principal:
        return check(table.lookup(bearer_token(request)), scope)

    return dependency


class RedactPathTokens(logging.Filter):
    """Replace extender path tokens in log records (uvicorn's access log shows paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _PATH_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        record.msg = _PATH_TOKEN.sub(r"\1***", str(record.msg))
        return True
