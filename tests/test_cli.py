"""The root ``wattwise`` command: exit statuses and lazy loading of sub-commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperCommand, TyperGroup

from wattwise.cli import COMMANDS, build_cli, main


def test_unknown_option_exits_2_with_usage_instead_of_a_traceback() -> None:
    # Regression: usage errors from typer's own click escaped as tracebacks (exit 1).
    assert main(["agent", "run", "--bogus"]) == 2


def test_unknown_command_exits_2() -> None:
    assert main(["no-such-command"]) == 2


def test_help_lists_every_command_without_importing_any() -> None:
    # Regression: listing the commands imported each one, FastAPI and matplotlib
    # included, so `wattwise --help` took 2-5 s (bench/cli_help.py measures it).
    probe = (
        "import json, sys\n"
        "from wattwise.cli import main\n"
        "code = main(['--help'])\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    code, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert code == 0
    for name, entry in COMMANDS.items():
        assert f" {name} " in result.stdout
        assert entry.module not in modules
    assert not {"fastapi", "numpy", "matplotlib", "pydantic", "httpx"} & set(modules)


def test_help_lists_each_command_whole_in_80_columns() -> None:
    # Regression: adding `power-events` widened the name column, and the models' line
    # ended "backtest on held-out..." in an 80-column terminal.
    result = subprocess.run(
        [sys.executable, "-m", "wattwise", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    listing = result.stdout.split("Commands:", 1)[1].splitlines()
    for name, entry in COMMANDS.items():
        [line] = [x for x in listing if x.strip().startswith(f"{name} ")]
        assert line.split(None, 1)[1] == entry.help and len(line) <= 80, line


def test_each_listed_help_line_is_the_commands_own() -> None:
    group = build_cli()
    with group.make_context("wattwise", ["agent"], resilient_parsing=True) as ctx:
        for name, entry in COMMANDS.items():
            command = group.get_command(ctx, name)
            assert command is not None, name
            listed = TyperCommand(name, help=entry.help).get_short_help_str(200)
            assert command.get_short_help_str(200) == listed, name


def test_agent_commands_do_not_load_the_optimizer_stack(tmp_path: Path) -> None:
    # The agent runs on every GPU node: its process must not carry the web
    # framework, the model fitting or the plotting of the optimizer.
    config = tmp_path / "agent.toml"
    config.write_text('[influx]\nurl = "http://influx:8086"\n')
    probe = (
        "import json, sys\n"
        "from wattwise.cli import main\n"
        f"code = main(['agent', 'check-config', {str(config)!r}])\n"
        "print(json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    code, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert code == 0
    assert not {"fastapi", "sklearn", "matplotlib", "scipy", "grafana_client"} & set(modules)


def test_apscheduler_adding_and_running_jobs_logs_nothing_by_default() -> None:
    # Regression: "Adding job tentatively" twice and "Scheduler started" at every start.
    probe = (
        "import logging\n"
        "from apscheduler.schedulers.background import BackgroundScheduler\n"
        "from wattwise.cli import quiet_libraries\n"
        "logging.basicConfig(level='INFO')\n"
        "quiet_libraries()\n"
        "scheduler = BackgroundScheduler()\n"
        "scheduler.add_job(print, 'interval', seconds=60)\n"
        "scheduler.start()\n"
        "scheduler.shutdown()\n"
        "logging.getLogger('wattwise.check').info('still heard')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == ["INFO:wattwise.check:still heard"]


def _with_subcommands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _with_subcommands(sub, (*path, name))


def test_help_keeps_every_bracket_of_its_text_and_offers_no_completion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regression: rich markup read "[budgets]" in `wattwise recommend budget --help` as a
    # style and dropped it ("Power budgets in force ( limits …"), and every group offered
    # --install-completion for a program that is not `wattwise`.
    group = build_cli()
    with group.make_context("wattwise", ["agent"], resilient_parsing=True) as ctx:
        tops = [(name, group.get_command(ctx, name)) for name in COMMANDS]
    checked = 0
    for name, top in tops:
        for path, command in _with_subcommands(top, (name,)):
            assert main([*path, "--help"]) == 0, path
            shown = " ".join(capsys.readouterr().out.split())
            assert "--install-completion" not in shown, path
            for bracketed in re.findall(r"\[[^\]\n]+\]", command.help or ""):
                assert " ".join(bracketed.split()) in shown, (path, bracketed)
                checked += 1
    assert checked > 0
