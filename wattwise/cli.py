"""The ``wattwise`` command: one console script, one sub-command per component.

Errors are mapped to exit statuses here, once: a bad configuration exits 2
with a message naming the key, any other wattwise error exits 1.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import typer

from wattwise.errors import ConfigError, WattwiseError

EXIT_CONFIG = 2


def build_app() -> typer.Typer:
    """Assemble the command tree (nothing is built at import time)."""
    from wattwise.agent.cli import build_agent_app
    from wattwise.dashboards.cli import build_dashboards_app
    from wattwise.demo import demo
    from wattwise.optimizer.evaluation.cli import eval_command
    from wattwise.optimizer.report.cli import report_command
    from wattwise.optimizer.service.cli import (
        build_optimizer_app,
        build_recommend_app,
        models_command,
    )

    app = typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        help="Monitor GPU, host and cooling energy; recommend how to spend less.",
    )
    app.add_typer(build_agent_app(), name="agent")
    app.add_typer(build_dashboards_app(), name="dashboards")
    app.add_typer(build_optimizer_app(), name="optimizer")
    app.add_typer(build_recommend_app(), name="recommend")
    app.command("models", help="Each model with its accuracy.")(models_command)
    app.command(help="Run the agent on a simulated fleet into the embedded store, live.")(demo)
    app.command("eval")(eval_command)
    app.command("report")(report_command)
    return app


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("WATTWISE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = build_app()(args=argv, prog_name="wattwise", standalone_mode=False)
    except ConfigError as e:
        print(f"wattwise: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except WattwiseError as e:
        print(f"wattwise: {e}", file=sys.stderr)
        return 1
    except click.exceptions.Abort:
        return 130
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
