"""An evaluation for people (rich tables, Markdown for docs) and for scripts (JSON)."""

from __future__ import annotations

import json

from rich.console import Group
from rich.table import Table
from rich.text import Text

from wattwise.common.strict_json import clean
from wattwise.optimizer.evaluation.results import ExperimentResult, ScenarioResult


def to_json(result: ScenarioResult) -> str:
    """Strict JSON: NaN (a measure without a value) becomes null."""
    return json.dumps(clean(result.as_dict()), indent=2, allow_nan=False)


def tables(result: ScenarioResult) -> Group:
    """One table per experiment (policies × outcomes), then each policy's setting, then the
    targets."""
    parts: list[Table | Text] = []
    for e in result.experiments:
        table, same = _experiment(result, e)
        parts.append(table)
        lines = [f"every policy: {same}"] if same else []
        lines += [f"{p.policy}: {p.setting}" for p in e.policies if p.setting]
        parts.append(Text("\n".join(lines) + "\n"))
    targets = Table(title=f"{result.scenario} ({result.truth}): targets", title_justify="left")
    for column in ("target", "met", "measured"):
        targets.add_column(column)
    for e in result.experiments:
        for t in e.targets:
            met = Text("yes") if t.met else Text("NO", "bold red")
            targets.add_row(Text(t.name), met, Text(t.text))
    return Group(*parts, targets)


SIDE_COLUMNS = ("inlet ≤ 27 °C %", "racks over", "throttled GPU-s")
"""Outcomes an experiment may not move: one that is the same for every policy is said once
below the table, so that the columns that differ fit 80 characters uncut."""


def _experiment(result: ScenarioResult, e: ExperimentResult) -> tuple[Table, str]:
    """The policies' table, and the side outcomes every policy shares (``name value``)."""
    cells = {
        "saving %": [f"{p.saving_pct:.2f}" for p in e.policies],
        "slowdown %": [f"{p.slowdown_pct:.2f}" for p in e.policies],
        "total kWh": [f"{p.total_energy_kwh:.1f}" for p in e.policies],
        "inlet ≤ 27 °C %": [f"{p.inlet_within_pct:.2f}" for p in e.policies],
        "racks over": [str(p.rack_over_samples) for p in e.policies],
        "throttled GPU-s": [f"{p.thermal_throttled_gpu_s:.0f}" for p in e.policies],
    }
    same = [c for c in SIDE_COLUMNS if len(set(cells[c])) == 1 and len(e.policies) > 1]
    table = Table(
        title=f"{result.scenario}: {e.name} (saving of {e.measure} vs {e.reference})",
        title_justify="left",
    )
    table.add_column("policy", no_wrap=True)
    shown = [c for c in cells if c not in same]
    for column in shown:  # a title may wrap, a number is never cut
        table.add_column(column, justify="right", min_width=max(map(len, cells[column])))
    for i, p in enumerate(e.policies):
        table.add_row(p.policy, *(cells[c][i] for c in shown))
    return table, ", ".join(f"{c} {cells[c][0]}" for c in same)


def markdown(results: list[ScenarioResult]) -> str:
    """The results table of docs/evaluation.md: one row per scenario and target."""
    lines = ["| scenario | GPUs | target | met | measured |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        for e in r.experiments:
            for t in e.targets:
                lines.append(
                    f"| {r.scenario} | {r.gpus} | {t.name} | {'yes' if t.met else '**no**'} "
                    f"| {t.text} |"
                )
    return "\n".join(lines)
