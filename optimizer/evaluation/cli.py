"""``wattwise eval SCENARIO [--json]``: replay a scenario on the twin and judge every policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wattwise.optimizer.evaluation.report import tables, to_json
from wattwise.optimizer.evaluation.runner import STEPS, run_scenario
from wattwise.optimizer.evaluation.scenario import load_scenario


def eval_command(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.toml or .yaml)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
    check: Annotated[bool, typer.Option("--check", help="exit 1 if a target is missed")] = False,
) -> None:
    """Replay SCENARIO on the fleet twin: wattwise against the baselines and the oracle."""
    chosen = load_scenario(scenario)
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as bar:
        task = bar.add_task(f"evaluating {chosen.name}", total=STEPS)

        def step(label: str) -> None:
            bar.update(task, advance=1, description=f"{chosen.name}: {label}")

        result = run_scenario(chosen, step)
    if as_json:
        typer.echo(to_json(result))
    else:
        Console().print(tables(result))
    if check and not result.all_met:
        raise typer.Exit(1)


def build_eval_app() -> typer.Typer:
    """A stand-alone app with the one command (the main CLI registers ``eval_command``)."""
    app = typer.Typer(add_completion=False)
    app.command("eval")(eval_command)
    return app
