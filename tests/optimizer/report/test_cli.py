"""``wattwise report`` from the command line, on the same settings file as the service."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.optimizer.report.conftest import Twin
from wattwise.errors import ConfigError
from wattwise.optimizer.report.cli import parse_duration_s, report_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(report_command)
    return app


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800.0), ("24h", 86400.0), ("7d", 604800.0), ("1.5h", 5400.0)]
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["24", "h", "0h", "-1h", "3 years", ""])
def test_bad_duration_is_a_config_error_naming_since(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration_s(text)
    assert caught.value.key == "--since"


def test_report_command_writes_the_page_from_the_settings_file(twin: Twin, tmp_path: Path) -> None:
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin.path, store)
    config = tmp_path / "optimizer.toml"
    config.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{store}"\n')
    out = tmp_path / "report.html"
    args = ["--config", str(config), "--since", "1h", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.count("<svg ") == 4 and "NVIDIA H100" in page


def test_report_command_with_bad_since_fails_before_touching_the_store(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(_app(), ["--since", "a while", "--out", str(out)])
    assert isinstance(result.exception, ConfigError) and result.exception.key == "--since"
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing-dir/report.html", "a-directory"])
def test_report_to_a_path_it_cannot_write_fails_before_fitting(
    twin: Twin, tmp_path: Path, where: str
) -> None:
    # Regression: `--out /missing/dir/x.html` ended in a traceback after a 15 s fit.
    store = tmp_path / "wattwise.sqlite"
    shutil.copy(twin.path, store)
    config = tmp_path / "optimizer.toml"
    config.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{store}"\n')
    (tmp_path / "a-directory").mkdir()
    out = tmp_path / where
    result = CliRunner().invoke(_app(), ["--config", str(config), "--out", str(out)])
    # Without the check the fit ran and writing the page raised an OSError.
    assert isinstance(result.exception, ConfigError) and result.exception.key == "--out"


def test_report_on_a_missing_embedded_store_names_it_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "var" / "wattwise.sqlite"
    config = tmp_path / "optimizer.toml"
    config.write_text(f'[store]\nkind = "embedded"\nembedded_path = "{missing}"\n')
    out = tmp_path / "report.html"
    result = CliRunner().invoke(_app(), ["--config", str(config), "--out", str(out)])
    assert isinstance(result.exception, ConfigError)
    assert result.exception.key == "store.embedded_path"
    assert not (tmp_path / "var").exists() and not out.exists()
