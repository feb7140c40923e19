"""``wattwise dashboards …``: lint and push."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from wattwise.common.command_group import command_group
from wattwise.dashboards.check import (
    CHECKOUT_PROVISIONING_DIR,
    DASHBOARDS_DIR,
    DEFAULT_DATASOURCE,
    dashboard_files,
    lint_all,
)

DirOpt = Annotated[
    Path, typer.Option("--dir", help="directory of dashboard JSON files", file_okay=False)
]


def lint(
    directory: DirOpt = DASHBOARDS_DIR,
    provisioning: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional at runtime here
        typer.Option(
            help="Grafana provisioning directory (default: deploy/grafana/provisioning, "
            "when run from the root of a source checkout)"
        ),
    ] = None,
) -> None:
    """Check every dashboard and provisioning file; one line per problem, exit 1 if any."""
    if provisioning is None and CHECKOUT_PROVISIONING_DIR.is_dir():
        provisioning = CHECKOUT_PROVISIONING_DIR
    problems = lint_all(directory, provisioning)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(dashboard_files(directory))} dashboards OK")


def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example:3000")],
    token_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="file holding the API token (else $WATTWISE_GRAFANA_TOKEN)"),
    ] = None,
    folder: Annotated[str, typer.Option(help="folder to publish into")] = "wattwise",
    datasource: Annotated[str, typer.Option(help="name of the InfluxDB datasource")] = (
        DEFAULT_DATASOURCE
    ),
    overwrite: Annotated[bool, typer.Option(help="replace dashboards already there")] = False,
    directory: DirOpt = DASHBOARDS_DIR,
) -> None:
    """Publish the dashboards to Grafana, mapping the datasource by name."""
    # grafana-client is imported only here, so other commands (the agent) don't load it.
    from wattwise.dashboards.push import PushSettings, push_dashboards, read_token

    settings = PushSettings(
        url=url,
        token=read_token(token_file, os.environ),
        folder=folder,
        datasource=datasource,
        overwrite=overwrite,
    )
    for pushed in push_dashboards(dashboard_files(directory), settings):
        typer.echo(f"{pushed.title}: {settings.url.rstrip('/')}{pushed.url}")


def build_dashboards_app() -> typer.Typer:
    app = command_group(no_args_is_help=True, help="Check and publish the Grafana dashboards.")
    app.command()(lint)
    app.command()(push)
    return app
