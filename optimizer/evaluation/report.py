"""An evaluation for people (rich tables, Markdown for docs) and for scripts (JSON)."""

from __future__ import annotations

import json
import math

from rich.console import Group
from rich.table import Table

from wattwise.optimizer.evaluation.results import ExperimentResult, ScenarioResult


def to_json(result: ScenarioResult) -> str:
    """Strict JSON: NaN (a measure without a value) becomes null."""
    return json.dumps(_clean(result.as_dict()), indent=2, allow_nan=False)


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def tables(result: ScenarioResult) -> Group:
    """One table per experiment (policies × outcomes), then the targets."""
    parts: list[Table] = [_experiment(result, e) for e in result.experiments]
    targets = Table(title=f"{result.scenario} ({result.truth}): targets", title_justify="left")
    for column in ("target", "met", "measured"):
        targets.add_column(column)
    for e in result.experiments:
        for t in e.targets:
            targets.add_row(t.name, "yes" if t.met else "[bold red]NO[/]", t.text)
    return Group(*parts, targets)


def _experiment(result: ScenarioResult, e: ExperimentResult) -> Table:
    table = Table(
        title=f"{result.scenario}: {e.name} (saving of {e.measure} vs {e.reference})",
        title_justify="left",
    )
    for column in (
        "policy",
        "saving %",
        "slowdown %",
        "total kWh",
        "inlet ≤ 27 °C %",
        "racks over",
        "throttled GPU-s",
        "setting",
    ):
        table.add_column(column, justify="left" if column in ("policy", "setting") else "right")
    for p in e.policies:
        table.add_row(
            p.policy,
            f"{p.saving_pct:.2f}",
            f"{p.slowdown_pct:.2f}",
            f"{p.total_energy_kwh:.1f}",
            f"{p.inlet_within_pct:.2f}",
            str(p.rack_over_samples),
            f"{p.thermal_throttled_gpu_s:.0f}",
            p.setting,
        )
    return table


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
