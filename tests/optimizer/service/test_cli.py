"""The one-shot commands on a twin-filled embedded store, configured by a TOML file."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode_many
from wattwise.errors import ConfigError
from wattwise.optimizer.service.cli import build_optimizer_app, build_recommend_app, models_command


@pytest.fixture
def config_file(twin_data: tuple[Path, int], tmp_path: Path) -> Path:
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin_data[0], store)
    path = tmp_path / "optimizer.toml"
    # the twin's data is from 2023: windows long enough to reach it from today
    path.write_text(
        f'[store]\nkind = "embedded"\nembedded_path = "{store}"\n'
        "[models]\nwindow_s = 1e9\n[recommend]\nrecent_s = 1e9\n"
    )
    return path


def test_recommend_caps_json_lists_every_gpu(config_file: Path) -> None:
    result = CliRunner().invoke(
        build_recommend_app(), ["caps", "--config", str(config_file), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 32 and {"host", "gpu", "recommended_limit_w"} <= rows[0].keys()


def test_recommend_cooling_table_shows_each_zone(config_file: Path) -> None:
    result = CliRunner().invoke(build_recommend_app(), ["cooling", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "z1" in result.output and "z2" in result.output


def test_recommend_place_ends_with_a_slurm_nodelist(config_file: Path) -> None:
    args = ["place", "--gpus", "1", "--zone", "z2", "--config", str(config_file)]
    result = CliRunner().invoke(build_recommend_app(), args)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("--nodelist=sim-r02-n")


def test_models_json_reports_each_models_accuracy(config_file: Path) -> None:
    app = typer.Typer()
    app.command()(models_command)
    result = CliRunner().invoke(app, ["--config", str(config_file), "--json"])
    assert result.exit_code == 0, result.output
    power = next(m for m in json.loads(result.output) if m["kind"] == "power")
    assert "mape_pct" in power["accuracy"]


def test_models_lists_what_the_registry_keeps_without_refitting(
    config_file: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    config_file.write_text(
        config_file.read_text().replace("[models]\n", f'[models]\nregistry_dir = "{registry}"\n')
    )
    app = typer.Typer()
    app.command()(models_command)
    args = ["--config", str(config_file), "--json"]
    fitted = CliRunner().invoke(app, [*args, "--refit"])
    assert fitted.exit_code == 0, fitted.output
    listed = CliRunner().invoke(app, args)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert rows == json.loads(fitted.output)  # listing did not fit a second version
    assert {r["version"] for r in rows} == {1}
    power = next(r for r in rows if r["kind"] == "power")
    assert power["samples"] > 0 and "mape_pct" in power["errors"]
    assert power["window"].count("Z") == 2


def test_unknown_store_kind_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text('[store]\nkind = "mongo"\n')
    result = CliRunner().invoke(build_recommend_app(), ["caps", "--config", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert result.exception.key == "store.kind"


def test_optimizer_app_has_serve_and_init_db() -> None:
    result = CliRunner().invoke(build_optimizer_app(), ["--help"])
    assert "serve" in result.output and "init-db" in result.output


def test_commands_read_a_prometheus_store_given_on_the_command_line(tmp_path: Path) -> None:
    """``--store prometheus --url`` on a real VictoriaMetrics holding the last 15 minutes."""
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        clock = ManualClock(start_ns=time.time_ns() - 15 * 60 * 1_000_000_000)
        fleet = SimFleet(FleetSpec.uniform(4, 2, racks=2, zones=2, seed=5, busy_share=1.0), clock)
        lines: list[bytes] = []
        for _ in range(90):
            clock.advance(10.0)
            lines += encode_many(fleet.read())
        server.write(lines)
        path = tmp_path / "optimizer.toml"
        path.write_text("[models]\nwindow_s = 1200\n[recommend]\nrecent_s = 900\n")
        flags = ["--config", str(path), "--store", "prometheus", "--url", server.url, "--json"]
        caps = CliRunner().invoke(build_recommend_app(), ["caps", *flags])
        app = typer.Typer()
        app.command()(models_command)
        models = CliRunner().invoke(app, flags)
    finally:
        server.stop()
    assert caps.exit_code == 0, caps.output
    assert len(json.loads(caps.output)) == 8
    assert models.exit_code == 0, models.output
    assert any(m["kind"] == "power" for m in json.loads(models.output))
