"""``wattwise power-events`` against the API served by uvicorn: what it adds is what the
API keeps, short ids name events, and each failure exits with the status the docs give."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.agent.http_peer import Answer, http_peer
from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN
from wattwise.common.api_client import ApiClient
from wattwise.common.secrets import Secret
from wattwise.errors import ApiUnavailable, ConfigError
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.events_cli import _full_id
from wattwise.optimizer.service.views import iso

READ = {"Authorization": f"Bearer {READ_TOKEN}"}


def _token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _run(api: str, token_file: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTWISE_")}
    env["WATTWISE_OPTIMIZER_URL"] = api
    if token_file is not None:
        env["WATTWISE_TOKEN_FILE"] = str(token_file)
    argv = [sys.executable, "-m", "wattwise", "power-events", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def _at(engine: Engine, minutes: float) -> str:
    return iso(engine.clock.time_ns() + int(minutes * 60e9))


def _kept(api: str) -> list[dict[str, object]]:
    body = httpx.get(f"{api}/v1/power-events?all=true", headers=READ, timeout=30).json()
    return list(body["items"])


def test_an_event_added_is_listed_shown_by_its_short_id_and_cancelled(
    api: str, engine: Engine, tmp_path: Path
) -> None:
    admin = _token_file(tmp_path, ADMIN_TOKEN)
    start = _at(engine, -1)
    added = _run(api, admin, "add", "rack:r01", "1kW", "--start", start, "--for", "1h",
                 "--reason", "feed B maintenance")  # fmt: skip
    assert added.returncode == 0, added.stderr
    [event] = [e for e in _kept(api) if e["reason"] == "feed B maintenance"]
    short = str(event["id"])[:8]
    assert event["scope"] == "rack:r01" and event["limit_w"] == 1000.0
    assert event["start"] == start and event["end"] == _at(engine, 59)
    assert added.stdout.startswith(f"Added {short} (active): rack:r01 at most 1.0 kW, ")
    assert added.stdout.rstrip().endswith("UTC: feed B maintenance")

    listed = _run(api, admin, "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if short in line and "│" in line]
    assert "rack:r01" in row and "1.0" in row and "active" in row
    assert f"{short}: feed B maintenance" in listed.stdout

    shown = _run(api, admin, "show", short, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout) == event

    cancelled = _run(api, admin, "cancel", short)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"Cancelled {short} (cancelled): rack:r01")
    assert f"UTC, cancelled {_at(engine, 0)[:16].replace('T', ' ')}: feed B" in cancelled.stdout
    assert "No scheduled or active power events" in _run(api, admin, "list").stdout
    assert "cancelled" in _run(api, admin, "list", "--all").stdout


def test_a_read_token_cannot_add_and_the_command_exits_1_saying_so(
    api: str, engine: Engine, tmp_path: Path
) -> None:
    before = _kept(api)
    result = _run(api, _token_file(tmp_path, READ_TOKEN), "add", "site", "5kW",
                  "--start", _at(engine, 0), "--for", "30m")  # fmt: skip
    assert result.returncode == 1
    assert "refused the token (HTTP 403)" in result.stderr and "admin" in result.stderr
    assert _kept(api) == before


def test_an_event_the_api_refuses_exits_1_with_the_apis_words(
    api: str, engine: Engine, tmp_path: Path
) -> None:
    result = _run(api, _token_file(tmp_path, ADMIN_TOKEN), "add", "row:7", "5kW",
                  "--start", _at(engine, 0), "--for", "30m")  # fmt: skip
    assert result.returncode == 1
    assert "body.scope" in result.stderr and "(HTTP 422)" in result.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("add", "site", "lots", "--for", "1h"), "LIMIT: 'lots'"),
        (("add", "site", "5kW", "--for", "soon"), "--for: 'soon'"),
        (("add", "site", "5kW"), "--end: nothing was given"),
        (("add", "site", "5kW", "--end", "+2h", "--for", "2h"), "--for: '2h' is given with"),
    ],
)
def test_arguments_it_cannot_read_exit_2_before_anything_is_sent(
    api: str, tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    before = _kept(api)
    result = _run(api, _token_file(tmp_path, ADMIN_TOKEN), *args)
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert _kept(api) == before


def test_without_a_token_file_it_exits_2_naming_the_option_and_its_variable(api: str) -> None:
    result = _run(api, None, "list")
    assert result.returncode == 2
    assert "--token-file: nothing was given" in result.stderr
    assert "WATTWISE_TOKEN_FILE" in result.stderr


def test_an_id_no_event_starts_with_exits_1(api: str, tmp_path: Path) -> None:
    result = _run(api, _token_file(tmp_path, ADMIN_TOKEN), "cancel", "zzzz")
    assert result.returncode == 1
    assert "no power event kept has an id starting with 'zzzz'" in result.stderr


def test_a_short_id_that_starts_several_events_is_refused_naming_them() -> None:
    items = [{"id": "abc1" + "0" * 28}, {"id": "abc2" + "0" * 28}, {"id": "f" * 32}]
    body = json.dumps({"items": items}).encode()
    answer = Answer(200, {"Content-Type": "application/json"}, body)
    with http_peer([answer]) as peer, ApiClient(peer.url, Secret("t")) as client:
        assert _full_id(client, "abc2") == items[1]["id"]
        assert _full_id(client, "F") == items[2]["id"]  # ids are lower-case hex
        with pytest.raises(ConfigError, match=r"^ID: 'abc' is not allowed.*abc10000, abc20000"):
            _full_id(client, "abc")


def test_an_answer_without_a_list_of_events_is_unavailable_not_a_crash() -> None:
    # A proxy or another service on the optimizer's port answers 200 with other JSON.
    answer = Answer(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
    with (
        http_peer([answer]) as peer,
        ApiClient(peer.url, Secret("t")) as client,
        pytest.raises(ApiUnavailable, match="answered /v1/power-events with no list"),
    ):
        _full_id(client, "abc")
