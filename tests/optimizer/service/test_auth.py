"""Bearer tokens: looked up by digest among every configured one, documented in OpenAPI."""

from __future__ import annotations

import httpx

from tests.optimizer.service.support import ADMIN_TOKEN, EXTENDER_TOKEN, READ_TOKEN, config
from wattwise.optimizer.service.auth import TokenTable

READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def test_each_configured_token_finds_its_principal_and_scopes() -> None:
    table = TokenTable(config().api.tokens)
    found = {t: table.lookup(t) for t in (READ_TOKEN, ADMIN_TOKEN, EXTENDER_TOKEN)}
    assert {t: (p.name, set(p.scopes)) for t, p in found.items() if p} == {
        READ_TOKEN: ("reader", {"read"}),
        ADMIN_TOKEN: ("ops", {"admin", "read"}),
        EXTENDER_TOKEN: ("kube", {"extender"}),
    }


def test_an_unknown_or_near_token_finds_nobody() -> None:
    table = TokenTable(config().api.tokens)
    assert table.lookup(READ_TOKEN + "x") is None
    assert table.lookup(READ_TOKEN[:-1]) is None
    assert table.lookup("") is None


def test_the_table_keeps_digests_not_tokens() -> None:
    table = TokenTable(config().api.tokens)
    kept = repr(vars(table))
    assert READ_TOKEN not in kept and ADMIN_TOKEN not in kept


def test_openapi_keeps_the_bearer_scheme_on_every_protected_operation(
    client: httpx.Client,
) -> None:
    document = client.get("/openapi.json", headers=READ).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected: list[dict[str, list[str]]]
            expected = [] if path == "/healthz" or "/k/{token}/" in path else [{"HTTPBearer": []}]
            assert operation.get("security", []) == expected, (method, path)
