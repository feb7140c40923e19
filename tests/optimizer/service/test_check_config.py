"""``wattwise optimizer check-config`` refuses what ``serve`` refuses, exit 2 naming the key,
and changes nothing: the installed command, as an operator runs it before a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.optimizer.service.support import ADMIN_TOKEN, sha


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "wattwise", "optimizer", "check-config", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTWISE_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def _config(tmp_path: Path, *sections: str) -> Path:
    path = tmp_path / "optimizer.toml"
    token = f'{{ name = "ops", sha256 = "{sha(ADMIN_TOKEN)}", scopes = ["admin"] }}'
    path.write_text(
        f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/store/wattwise.sqlite"\n'
        f"[api]\nport = 8123\ntokens = [{token}]\n" + "\n".join(sections)
    )
    return path


def test_a_good_file_is_ok_with_what_it_serves_and_nothing_is_created(tmp_path: Path) -> None:
    events = tmp_path / "power-events.json"
    path = _config(tmp_path, f'[budgets]\nevents_file = "{events}"')
    result = _check(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{path}: OK (store embedded {tmp_path}/store/wattwise.sqlite, "
        f"API http://127.0.0.1:8123 with 1 tokens, 0 events in {events})"
    )
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.toml"]


def test_what_serve_would_only_warn_about_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/w.sqlite"\n')
    result = _check("--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "power events in memory only" in result.stdout
    assert "warning: no API tokens" in result.stderr
    assert "warning: budgets.events_file is not set" in result.stderr


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("[api]\nport = 70000", "api.port"),
        ('[budgets]\nevents_file = "{tmp}/gone/events.json"', "budgets.events_file"),
        ('[budgets]\nevents_file = "{tmp}/events.json"', "budgets.events_file"),  # damaged
        ('[webhooks]\ntargets = [{{ url = "http://127.0.0.1:9/hook" }}]', "webhooks.secret_file"),
        ('[api]\nssl_certfile = "{tmp}/missing.pem"', "api.ssl_certfile"),
    ],
)
def test_what_serve_would_refuse_exits_2_naming_the_key(
    tmp_path: Path, section: str, key: str
) -> None:
    (tmp_path / "events.json").write_text('{"version": 1, "events": [{"id": ')
    path = tmp_path / "optimizer.toml"
    store = f'[store]\nkind = "embedded"\nembedded_path = "{tmp_path}/w.sqlite"\n'
    path.write_text(store + section.format(tmp=tmp_path) + "\n")
    result = _check(str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"configuration error: {key}" in result.stderr and "Traceback" not in result.stderr


def test_a_store_password_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text(
        '[store]\nkind = "influx"\nurl = "http://127.0.0.1:9"\nusername = "wattwise"\n'
        f'password_file = "{tmp_path}/influx.password"\n'
    )
    result = _check(str(path))
    assert result.returncode == 2
    assert "configuration error: store.password_file" in result.stderr
    assert json.dumps(str(tmp_path / "influx.password"))[1:-1] in result.stderr


def test_a_missing_file_exits_2_saying_it_does_not_exist(tmp_path: Path) -> None:
    result = _check(str(tmp_path / "none.toml"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_the_shipped_example_passes_warning_of_what_only_the_unit_has() -> None:
    example = Path(__file__).resolve().parents[3] / "deploy" / "optimizer.toml.example"
    result = _check(str(example))
    assert result.returncode == 0, result.stderr
    assert "store influx http://127.0.0.1:8086" in result.stdout
    # Its token is a systemd credential: only the running unit has the file.
    credential = "/run/credentials/wattwise-optimizer.service/influx-token"
    assert f"store.token_file {credential} is a credential the unit loads" in result.stderr


def test_inside_the_unit_a_credential_is_read_like_any_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text(
        '[store]\nkind = "influx"\nurl = "http://127.0.0.1:9"\n'
        'token_file = "/run/credentials/wattwise-optimizer.service/none"\n'
    )
    argv = [sys.executable, "-m", "wattwise", "optimizer", "check-config", str(path)]
    env = {**os.environ, "CREDENTIALS_DIRECTORY": "/run/credentials/wattwise-optimizer.service"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert "configuration error: store.token_file" in result.stderr
