"""The ``wattwise`` command: one console script, one sub-command per component.

Errors are mapped to exit statuses here, once: a bad configuration exits 2
with a message naming the key, any other wattwise error exits 1.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from wattwise import __version__
from wattwise.common.command_group import command_group
from wattwise.errors import ConfigError, WattwiseError
from wattwise.extras import extra_for, install_hint

EXIT_CONFIG = 2


@dataclass(frozen=True)
class Entry:
    """Where a sub-command lives (a Typer app factory, or a single command function), the
    one line ``wattwise --help`` shows for it without importing it, and the extra that
    installs what it needs (None: the agent's own dependencies)."""

    module: str
    attribute: str
    is_app: bool
    help: str
    extra: str | None = None


COMMANDS: dict[str, Entry] = {
    "agent": Entry("wattwise.agent.cli", "build_agent_app", True, "The node agent."),
    "optimizer": Entry(
        "wattwise.optimizer.service.cli",
        "build_optimizer_app",
        True,
        "The optimizer service.",
        "optimizer",
    ),
    "recommend": Entry(
        "wattwise.optimizer.service.cli",
        "build_recommend_app",
        True,
        "Recommendations computed here and now.",
        "optimizer",
    ),
    "models": Entry(
        "wattwise.optimizer.service.cli",
        "build_models_app",
        True,
        "Each model and its accuracy; backtest on held-out data.",
        "optimizer",
    ),
    "power-events": Entry(
        "wattwise.optimizer.service.events_cli",
        "build_power_events_app",
        True,
        "A running optimizer's timed power events: list, add, cancel.",
        "optimizer",
    ),
    "dashboards": Entry(
        "wattwise.dashboards.cli",
        "build_dashboards_app",
        True,
        "Check and publish the Grafana dashboards.",
        "dashboards",
    ),
    "report": Entry(
        "wattwise.optimizer.report.cli",
        "report_command",
        False,
        "A self-contained HTML report: power, models, caps, cooling.",
        "report",
    ),
    "eval": Entry(
        "wattwise.optimizer.evaluation.cli",
        "eval_command",
        False,
        "Judge wattwise on the twin against baselines and the oracle.",
        "optimizer",
    ),
    "demo": Entry(
        "wattwise.demo",
        "demo",
        False,
        "The whole system on a simulated fleet, on this machine.",
        "demo",
    ),
}
"""Every sub-command, loaded only when it is run: the agent's process must not carry the
optimizer's web stack, models and plotting, and ``wattwise --help`` loads none of them."""


class LazyGroup(TyperGroup):
    """A command group that imports a sub-command's module only when the command is used."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # The listing needs each command's name and one line, both known without an import.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, name: str) -> Any:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        if self._listing:
            return TyperCommand(name, help=entry.help)
        target = getattr(importlib.import_module(entry.module), entry.attribute)
        if entry.is_app:
            app: typer.Typer = target()
        else:
            app = command_group()
            app.command(name, help=entry.help)(target)
        command = typer.main.get_command(app)
        command.name = name
        return command


def build_cli() -> LazyGroup:
    """The ``wattwise`` command tree (nothing is built at import time)."""
    return LazyGroup(
        name="wattwise",
        help="Monitor GPU, host and cooling energy; recommend how to spend less.",
        no_args_is_help=True,
        # Plain help for the command list: rich's renderer alone costs ~0.1 s to import.
        rich_markup_mode=None,
    )


CHATTY_LIBRARIES = ("httpx", "httpcore", "apscheduler")
"""Libraries that log routine work at INFO: httpx a line per request (every write of the
agent, 86,400 a day), APScheduler every job it adds or runs."""


def quiet_libraries() -> None:
    """Let the libraries speak only of trouble, unless wattwise itself logs at DEBUG."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(environ: Mapping[str, str]) -> str:
    """``WATTWISE_LOG_LEVEL`` (INFO when unset), refused unless it names a level."""
    level = environ.get("WATTWISE_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("WATTWISE_LOG_LEVEL", level, f"one of {', '.join(LOG_LEVELS)}")
    return level


def main(argv: list[str] | None = None) -> int:
    try:
        level = log_level(os.environ)
    except ConfigError as e:
        print(f"wattwise: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    try:
        result = build_cli().main(args=argv, prog_name="wattwise", standalone_mode=False)
    except ModuleNotFoundError as e:
        extra = extra_for(e.name or "", _extra_of(argv if argv is not None else sys.argv[1:]))
        if extra is None:
            raise
        print(f"wattwise: {install_hint(extra, e.name or '', __version__)}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"wattwise: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except WattwiseError as e:
        print(f"wattwise: {e}", file=sys.stderr)
        return 1
    except typer.Abort:
        return 130
    except typer.TyperException as e:
        # Usage errors (unknown option, bad value for a flag) print the usage and exit 2.
        e.show()  # type: ignore[attr-defined]
        return int(getattr(e, "exit_code", 2))
    return result if isinstance(result, int) else 0


def _extra_of(argv: list[str]) -> str | None:
    """The extra of the command named first in ``argv``."""
    entry = next((COMMANDS[a] for a in argv if a in COMMANDS), None)
    return None if entry is None else entry.extra


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
