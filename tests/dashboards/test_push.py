from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.dashboards.grafana_peer import GrafanaState, grafana_peer
from wattwise.dashboards.check import DASHBOARDS_DIR, dashboard_files
from wattwise.dashboards.cli import build_dashboards_app
from wattwise.dashboards.push import PushSettings, push_dashboards, read_token
from wattwise.errors import AuthError, ConfigError, DeliveryError

SITE_DS = {"id": 7, "uid": "site-influx-uid", "name": "Site Influx", "type": "influxdb"}


def _state() -> GrafanaState:
    return GrafanaState(token="s3cret", datasources={"Site Influx": SITE_DS})


def test_push_creates_the_folder_and_maps_the_datasource_by_name() -> None:
    state = _state()
    with grafana_peer(state) as url:
        settings = PushSettings(url=url, token="s3cret", folder="Energy", datasource="Site Influx")
        pushed = push_dashboards(dashboard_files(DASHBOARDS_DIR), settings)
    assert len(pushed) == 8 and len(state.dashboards) == 8
    assert state.folders == [{"id": 1, "uid": "f1", "title": "Energy"}]
    for body in state.dashboards.values():
        assert body["folderUid"] == "f1" and body["overwrite"] is False
        assert "id" not in body["dashboard"] and "__inputs" not in body["dashboard"]
        (ds,) = [v for v in body["dashboard"]["templating"]["list"] if v["type"] == "datasource"]
        assert (
            ds["current"]["value"] == "site-influx-uid" and ds["current"]["text"] == "Site Influx"
        )
    assert all(auth == "Bearer s3cret" for _, _, auth in state.requests)


def test_push_reuses_an_existing_folder_and_refuses_to_overwrite_unless_told() -> None:
    state = _state()
    state.folders.append({"id": 3, "uid": "existing", "title": "wattwise"})
    with grafana_peer(state) as url:
        settings = PushSettings(url=url, token="s3cret", datasource="Site Influx")
        push_dashboards(dashboard_files(DASHBOARDS_DIR)[:1], settings)
        with pytest.raises(DeliveryError):
            push_dashboards(dashboard_files(DASHBOARDS_DIR)[:1], settings)
        overwrite = PushSettings(url=url, token="s3cret", datasource="Site Influx", overwrite=True)
        push_dashboards(dashboard_files(DASHBOARDS_DIR)[:1], overwrite)
    assert len(state.folders) == 1
    assert [body["folderUid"] for body in state.dashboards.values()] == ["existing"]


def test_wrong_token_is_an_auth_error() -> None:
    with grafana_peer(_state()) as url, pytest.raises(AuthError):
        push_dashboards(dashboard_files(DASHBOARDS_DIR), PushSettings(url=url, token="wrong"))


def test_token_comes_from_file_or_environment_never_empty(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert read_token(token_file, {"WATTWISE_GRAFANA_TOKEN": "env"}) == "from-file"
    assert read_token(None, {"WATTWISE_GRAFANA_TOKEN": "env"}) == "env"
    with pytest.raises(ConfigError) as missing:
        read_token(None, {})
    # Regression: "token: the value (not shown: it may be a secret) is not allowed" when
    # no token was given at all.
    assert str(missing.value).startswith("token: nothing was given; it must be ")


def test_cli_push_reads_the_token_from_the_environment() -> None:
    state = _state()
    with grafana_peer(state) as url:
        args = ["push", "--url", url, "--datasource", "Site Influx", "--folder", "GPU"]
        result = CliRunner().invoke(
            build_dashboards_app(), args, env={"WATTWISE_GRAFANA_TOKEN": "s3cret"}
        )
    assert result.exit_code == 0, result.output
    assert len(state.dashboards) == 8 and "Fleet overview" in result.output
