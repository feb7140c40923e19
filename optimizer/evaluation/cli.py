"""``wattwise eval SCENARIO [--json]``: replay a scenario on the twin and judge every policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from wattwise.collector.sim.truths import TRUTHS, check_truth
from wattwise.common.command_group import command_group
from wattwise.optimizer.evaluation.report import tables, to_json
from wattwise.optimizer.evaluation.results import ScenarioResult
from wattwise.optimizer.evaluation.runner import run_scenario, steps
from wattwise.optimizer.evaluation.scenario import Scenario, load_scenario


def eval_command(
    scenario: Annotated[Path, typer.Argument(help="scenario file (.toml or .yaml)")],
    truth: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional at runtime here
        typer.Option(
            metavar="TRUTH",
            help=f"the twin's truth to run under, repeatable (default: all of {', '.join(TRUTHS)})",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
    check: Annotated[bool, typer.Option("--check", help="exit 1 if a target is missed")] = False,
) -> None:
    """Replay SCENARIO on the fleet twin under each truth: wattwise against the baselines and
    the oracle. ``--json`` prints a list, one result per truth."""
    loaded = load_scenario(scenario)
    names = [check_truth(t) for t in (truth or list(TRUTHS))]
    results = [_run(loaded.model_copy(update={"truth": name})) for name in names]
    if as_json:
        typer.echo("[" + ",\n".join(to_json(r) for r in results) + "]")
    else:
        for result in results:
            Console().print(tables(result))
    if check and not all(r.all_met for r in results):
        raise typer.Exit(1)


def _run(chosen: Scenario) -> ScenarioResult:
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as bar:
        name = f"{chosen.name} ({chosen.truth})"
        task = bar.add_task(f"evaluating {name}", total=steps(chosen))

        def step(label: str) -> None:
            bar.update(task, advance=1, description=f"{name}: {label}")

        return run_scenario(chosen, step)


def build_eval_app() -> typer.Typer:
    """A stand-alone app with the one command (the main CLI registers ``eval_command``)."""
    app = command_group()
    app.command("eval")(eval_command)
    return app
