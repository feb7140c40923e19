"""The one-shot commands on a twin-filled embedded store, configured by a TOML file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from tests.optimizer.service.support import fill_store
from tests.prometheus_peers import VictoriaMetricsServer
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode_many
from wattwise.errors import ConfigError
from wattwise.optimizer.service.cli import build_optimizer_app, build_recommend_app, models_command
from wattwise.optimizer.service.power_events import EventBook
from wattwise.optimizer.service.settings import load_optimizer_config


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


def _recommend(*args: str) -> Result:
    return CliRunner().invoke(build_recommend_app(), list(args))


def test_recommend_caps_json_lists_every_gpu(config_file: Path) -> None:
    result = _recommend("caps", "--config", str(config_file), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 32 and {"host", "gpu", "recommended_limit_w"} <= rows[0].keys()


def _table_hosts(text: str) -> list[str]:
    return re.findall(r"^│ (sim-r\d+-n\d+) ", text, re.MULTILINE)


@pytest.fixture(scope="module")
def busy_config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busier twin (90 % of GPUs at work) whose memory-bound jobs are worth capping."""
    directory = tmp_path_factory.mktemp("busy")
    fill_store(directory / "wattwise.sqlite", seed=3, busy_share=0.9)
    path = directory / "optimizer.toml"
    path.write_text(
        f'[store]\nkind = "embedded"\nembedded_path = "{directory / "wattwise.sqlite"}"\n'
        "[models]\nwindow_s = 1e9\n[recommend]\nrecent_s = 1e9\n"
    )
    return path


def test_recommend_caps_shows_the_changes_largest_saving_first_then_the_total(
    busy_config_file: Path,
) -> None:
    # Regression: 2,261 lines for 256 GPUs at 80 columns, every GPU, in fleet order.
    config_file = busy_config_file
    rows = json.loads(_recommend("caps", "--config", str(config_file), "--json").stdout)
    changes = sorted(
        (r for r in rows if r["recommended_limit_w"] not in (None, r["current_limit_w"])),
        key=lambda r: -r["saving_wh_per_job_hour"],
    )
    assert 0 < len(changes) < len(rows)
    shown = _recommend("caps", "--config", str(config_file))
    assert shown.exit_code == 0, shown.output
    assert _table_hosts(shown.stdout) == [r["host"] for r in changes]
    total_wh = sum(r["saving_wh_per_job_hour"] for r in changes)
    assert total_wh < 1e3  # two decimals of kWh would read 0.00: Wh
    assert f"{len(changes)} of 32 GPUs to change: their jobs use" in shown.stdout
    assert f"({total_wh:,.0f} Wh less per hour of their work)" in shown.stdout
    # Regression: "0.6–0.9 % less energy …, at most 1.7 % slower" set the expected saving
    # beside the worst slowdown, as if the caps cost more time than they save energy.
    slow = max(r["slowdown_pct"] for r in changes)
    worst = max(r["slowdown_worst_pct"] for r in changes)
    assert worst > slow
    assert f"at most {slow:.1f} % slower ({worst:.1f} % at worst);" in shown.stdout
    assert all(r["saving_pct"] >= r["slowdown_pct"] for r in changes)
    every = _recommend("caps", "--config", str(config_file), "--all")
    assert len(_table_hosts(every.stdout)) == 32


def test_recommend_says_whether_it_fits_or_uses_the_kept_models(
    config_file: Path, tmp_path: Path
) -> None:
    # Regression: every call refitted all nine models (~10 s) without a word.
    fitted = _recommend("caps", "--config", str(config_file), "--json")
    assert "Fitting the models on the last" in fitted.stderr
    assert "no registry is configured" in fitted.stderr
    registry = tmp_path / "models"
    text = config_file.read_text()
    config_file.write_text(text.replace("[models]\n", f'[models]\nregistry_dir = "{registry}"\n'))
    first = _recommend("caps", "--config", str(config_file), "--json")
    assert f"none are kept in {registry} yet" in first.stderr
    versions = sorted(p.name for p in registry.rglob("v*.json"))
    kept = _recommend("caps", "--config", str(config_file), "--json")
    assert f"Using the models kept in {registry}" in kept.stderr
    assert sorted(p.name for p in registry.rglob("v*.json")) == versions  # nothing refitted
    assert json.loads(kept.stdout) == json.loads(first.stdout)
    refitted = _recommend("caps", "--config", str(config_file), "--json", "--refit")
    assert "Fitting the models" in refitted.stderr and "(as asked)" in refitted.stderr


def test_recommend_cooling_table_shows_each_zone_and_its_reason_whole(config_file: Path) -> None:
    # Regression: the reason was a table column, cut a word a line at 80 columns.
    rows = json.loads(_recommend("cooling", "--config", str(config_file), "--json").stdout)
    result = _recommend("cooling", "--config", str(config_file))
    assert result.exit_code == 0, result.output
    assert {r["zone"] for r in rows} == {"z1", "z2"}
    assert "…" not in result.stdout
    for r in rows:
        (line,) = [
            line for line in result.stdout.splitlines() if line.startswith(f"│ {r['zone']} ")
        ]
        assert f"{r['recommended_setpoint_c']:.1f}" in line
        assert f"{r['zone']}: {r['reason']}" in result.stdout.splitlines()


def test_recommend_place_gives_the_best_hosts_nodelist_and_the_rest_apart(
    config_file: Path,
) -> None:
    # Regression: --nodelist named all ten candidates; Slurm would allocate ten nodes.
    args = ["place", "--gpus", "1", "--zone", "z2", "--config", str(config_file)]
    result = _recommend(*args)
    assert result.exit_code == 0, result.output
    hosts = _table_hosts(result.stdout)
    assert len(hosts) > 1
    lines = result.stdout.splitlines()
    assert f"sbatch --nodelist={hosts[0]} …" in lines
    assert f"Alternatives, best first: {', '.join(hosts[1:])}" in lines
    placed = json.loads(_recommend(*args, "--json").stdout)
    assert placed["nodelist"] == placed["candidates"][0]["host"] == hosts[0]


def test_recommend_place_with_no_fitting_node_says_why_and_exits_1(config_file: Path) -> None:
    result = _recommend("place", "--gpus", "64", "--config", str(config_file))
    assert result.exit_code == 1
    assert "No node can take a 64-GPU job now:" in result.stdout
    assert "nodes: fewer than 64 free GPUs that fit the request" in result.stdout
    assert "sbatch" not in result.stdout


def test_read_only_commands_refuse_a_missing_embedded_store_and_create_nothing(
    tmp_path: Path,
) -> None:
    # Regression: an empty SQLite file (directories included) and empty results, exit 0.
    missing = tmp_path / "no" / "such" / "wattwise.sqlite"
    path = tmp_path / "optimizer.toml"
    path.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{missing}"\n')
    result = _recommend("caps", "--config", str(path))
    assert isinstance(result.exception, ConfigError)
    assert result.exception.key == "store.embedded_path" and str(missing) in str(result.exception)
    assert not (tmp_path / "no").exists()


def test_without_a_configuration_file_it_says_so_instead_of_connection_refused(
    tmp_path: Path,
) -> None:
    result = _recommend("caps", "--config", str(tmp_path / "optimizer.toml"))
    assert isinstance(result.exception, ConfigError)
    assert result.exception.key == "--config"
    assert "--config demo-data/optimizer.toml" in str(result.exception)


def test_models_json_reports_each_models_accuracy(config_file: Path) -> None:
    app = typer.Typer()
    app.command()(models_command)
    result = CliRunner().invoke(app, ["--config", str(config_file), "--json"])
    assert result.exit_code == 0, result.output
    power = next(m for m in json.loads(result.stdout) if m["kind"] == "power")
    assert "mape_pct" in power["accuracy"]


def test_models_table_fits_80_columns_and_gives_each_models_notes_a_line(
    config_file: Path,
) -> None:
    # Regression: seven columns, window and notes among them, cut every cell at 80
    # columns to a word a line ("cap_r…", "volta…"), forty lines for one model.
    app = typer.Typer()
    app.command()(models_command)
    rows = json.loads(CliRunner().invoke(app, ["--config", str(config_file), "--json"]).stdout)
    shown = CliRunner().invoke(app, ["--config", str(config_file)])
    assert shown.exit_code == 0, shown.output
    table = [line for line in shown.stdout.splitlines() if line.startswith("│")]
    assert len(table) == len(rows)
    assert all(len(line) <= 80 for line in table) and "…" not in shown.stdout
    power = next(r for r in rows if r["kind"] == "power")
    (line,) = [row for row in table if row.startswith("│ power ")]
    assert line.split("│")[5].strip() == f"{power['errors']['mape_pct']:.1f}"
    assert f"power ({power['scope']}): errors {power['accuracy']}; {power['notes']}" in (
        shown.stdout
    )
    assert f"fitted on {power['window']}" in shown.stdout


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
    rows = json.loads(listed.stdout)
    assert rows == json.loads(fitted.stdout)  # listing did not fit a second version
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


def test_optimizer_app_has_serve_check_config_and_init_db() -> None:
    result = CliRunner().invoke(build_optimizer_app(), ["--help"])
    assert all(f" {name} " in result.output for name in ("serve", "check-config", "init-db"))


def test_models_on_a_short_recording_say_too_little_data_instead_of_mape_100(
    tmp_path: Path,
) -> None:
    # Regression: two GPUs for five minutes are one 600 s block; cross-validation trained on
    # nothing and the listing read "mape_pct 100".
    store = tmp_path / "short.sqlite"
    fill_store(store, nodes=2, gpus=1, minutes=5)
    path = tmp_path / "optimizer.toml"
    path.write_text(
        f'[store]\nkind = "embedded"\nembedded_path = "{store}"\n[models]\nwindow_s = 1e9\n'
    )
    app = typer.Typer()
    app.command()(models_command)
    result = CliRunner().invoke(app, ["--config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    power = next(m for m in json.loads(result.stdout) if m["kind"] == "power")
    assert power["errors"] == {} and power["accuracy"] == "-"
    assert "too little data for cross-validation: 1 block" in power["notes"]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[store]\nurl = "http://admin:PW-s3cret@influx:8086"\n', "store.url"),
        (
            '[webhooks]\ntargets = [{ url = "https://hook:PW-s3cret@ops.example/wattwise" }]\n',
            "webhooks.targets.url",
        ),
    ],
)
def test_credentials_in_an_optimizer_url_are_refused_and_never_echoed(
    tmp_path: Path, toml: str, key: str
) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_optimizer_config(path, require_file=True)
    assert caught.value.key == key and "PW-s3cret" not in str(caught.value)


def test_an_event_lead_out_of_range_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text("[budgets]\nevent_lead_s = -5\n")
    with pytest.raises(ConfigError) as caught:
        load_optimizer_config(path, require_file=True)
    assert caught.value.key == "budgets.event_lead_s" and "0" in str(caught.value)


def test_an_applier_interval_of_zero_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "optimizer.toml"
    path.write_text("[budgets]\napplier_interval_s = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_optimizer_config(path, require_file=True)
    assert caught.value.key == "budgets.applier_interval_s" and "0" in str(caught.value)


def test_serve_with_a_config_file_that_is_not_there_exits_2_instead_of_serving(
    tmp_path: Path,
) -> None:
    # Regression: `optimizer serve --config /nonexistent.toml` served on the defaults,
    # an InfluxDB on localhost, logging "refit failed" every interval.
    missing = tmp_path / "optimizer.toml"
    result = subprocess.run(
        [sys.executable, "-m", "wattwise", "optimizer", "serve", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"--config: '{missing}' does not exist; it must be an optimizer" in result.stderr
    assert "Uvicorn running" not in result.stderr


def test_optimizer_config_that_is_a_directory_exits_2_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattwise", "optimizer", "serve", "--config", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "configuration error: config:" in result.stderr and "is a directory" in result.stderr


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
    assert len(json.loads(caps.stdout)) == 8
    assert models.exit_code == 0, models.output
    assert any(m["kind"] == "power" for m in json.loads(models.stdout))


def _with_budgets(config_file: Path, budgets: str) -> Path:
    config_file.write_text(config_file.read_text() + f"[budgets]\n{budgets}\n")
    return config_file


def test_recommend_budget_plans_the_configured_limits_and_the_services_events(
    config_file: Path, tmp_path: Path
) -> None:
    # An event the service keeps, in force now: the command plans with it as serve would.
    now_ns = time.time_ns()
    events = tmp_path / "power-events.json"
    book = EventBook(events, ManualClock(start_ns=now_ns))
    event = book.add("zone:z2", 2000.0, now_ns - 3600 * 10**9, now_ns + 3600 * 10**9, "DR")
    _with_budgets(
        config_file,
        f'rack_w = {{ r01 = 1000.0, r02 = 1e9 }}\nevents_file = "{events}"',
    )
    result = _recommend("budget", "--config", str(config_file), "--json")
    assert result.exit_code == 0, result.output
    plans = {p["scope"]: p for p in json.loads(result.stdout)}
    assert set(plans) == {"rack:r01", "rack:r02", "zone:z2"}
    assert plans["zone:z2"]["event_id"] == event.id and plans["zone:z2"]["limit_w"] == 2000.0
    assert plans["rack:r01"]["planned"] is True and plans["rack:r02"]["planned"] is False
    assert EventBook(events, ManualClock()).list(include_ended=True) == [event]

    one = _recommend("budget", "--config", str(config_file), "--scope", "rack:r01", "--json")
    assert [p["scope"] for p in json.loads(one.stdout)] == ["rack:r01"]

    table = _recommend("budget", "--config", str(config_file), "--scope", "rack:r01")
    assert table.exit_code == 0, table.output
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("│ rack:r01 ")]
    cells = [c.strip() for c in row.strip("│").split("│")]
    r01 = plans["rack:r01"]
    assert cells[0] == "rack:r01" and cells[1] == "1.0"
    assert cells[2] == f"{r01['predicted_peak_before_w'] / 1e3:,.1f}"
    assert cells[4] == ("caps" if r01["feasible"] else "too low")
    assert f"rack:r01: {r01['reason']}" in " ".join(table.stdout.split())
    # Regression: nine columns with units in every cell cut the titles ("plann…",
    # "capp…") and wrapped each power onto two lines at 80 columns.
    assert all(len(line) <= 80 for line in table.stdout.splitlines() if "│" in line)
    assert "…" not in table.stdout
    assert "rack:r02" not in table.stdout


def test_recommend_budget_without_any_budget_says_how_to_set_one(config_file: Path) -> None:
    result = _recommend("budget", "--config", str(config_file))
    assert result.exit_code == 0, result.output
    assert "No power budget in force: set [budgets] rack_w" in result.stdout
    assert json.loads(_recommend("budget", "--config", str(config_file), "--json").stdout) == []
