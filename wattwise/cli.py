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
from typer.core import TyperGroup

from wattwise.errors import ConfigError, WattwiseError

EXIT_CONFIG = 2


@dataclass(frozen=True)
class Entry:
    """Where a sub-command lives: a Typer app factory, or a single command function."""

    module: str
    attribute: str
    is_app: bool
    help: str = ""


COMMANDS: dict[str, Entry] = {
    "agent": Entry("wattwise.agent.cli", "build_agent_app", True),
    "optimizer": Entry("wattwise.optimizer.service.cli", "build_optimizer_app", True),
    "recommend": Entry("wattwise.optimizer.service.cli", "build_recommend_app", True),
    "models": Entry(
        "wattwise.optimizer.service.cli", "models_command", False, "Each model with its accuracy."
    ),
    "dashboards": Entry("wattwise.dashboards.cli", "build_dashboards_app", True),
    "report": Entry("wattwise.optimizer.report.cli", "report_command", False),
    "eval": Entry("wattwise.optimizer.evaluation.cli", "eval_command", False),
    "demo": Entry(
        "wattwise.demo",
        "demo",
        False,
        "Run the agent on a simulated fleet into the embedded store, live.",
    ),
}
"""Every sub-command, loaded only when it is run (or listed by --help): the agent's
process must not carry the optimizer's web stack, models and plotting."""


class LazyGroup(TyperGroup):
    """A command group that imports a sub-command's module when the command is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, name: str) -> Any:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        target = getattr(importlib.import_module(entry.module), entry.attribute)
        if entry.is_app:
            app: typer.Typer = target()
        else:
            app = typer.Typer(add_completion=False)
            app.command(name, help=entry.help or None)(target)
        command = typer.main.get_command(app)
        command.name = name
        return command


def build_cli() -> LazyGroup:
    """The ``wattwise`` command tree (nothing is built at import time)."""
    return LazyGroup(
        name="wattwise",
        help="Monitor GPU, host and cooling energy; recommend how to spend less.",
        no_args_is_help=True,
    )


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
    try:
        result = build_cli().main(args=argv, prog_name="wattwise", standalone_mode=False)
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


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
