"""What the one-shot commands and the demo print: tables sized for a terminal, totals, and
commands to copy on lines of their own.

Rows are the recommendations' JSON dicts (``as_dict()`` or the API's items), so the
``wattwise recommend`` commands and ``wattwise demo`` print the same thing.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wattwise.optimizer.recommend.types import changes_limit

Row = Mapping[str, Any]

CAP_COLUMNS = (
    "host", "gpu", "current_limit_w", "recommended_limit_w", "saving_pct", "slowdown_pct",
    "confidence",
)  # fmt: skip


def is_cap_change(row: Row) -> bool:
    """A recommendation to set a limit other than the one the GPU has now."""
    return changes_limit(row["current_limit_w"], row.get("recommended_limit_w"))


def cap_changes(rows: Sequence[Row]) -> list[Row]:
    """The changes, largest saving first."""
    return sorted(
        (r for r in rows if is_cap_change(r)),
        key=lambda r: -_number(r.get("saving_wh_per_job_hour", r["saving_w"])),
    )


def caps_total(rows: Sequence[Row]) -> str:
    """One line: how many GPUs change and what their jobs save, and what is left as it is.
    Only changes count: a GPU kept at its limit is not a recommendation."""
    changes = cap_changes(rows)
    unchanged = sum(1 for r in rows if r.get("recommended_limit_w") is not None) - len(changes)
    refused = sum(1 for r in rows if r.get("recommended_limit_w") is None)
    rest = f"{unchanged} kept at their limit, {refused} without a recommendation"
    if not changes:
        return f"0 of {len(rows)} GPUs to change; {rest}"
    wh = sum(_number(r.get("saving_wh_per_job_hour", 0.0)) for r in changes)
    pct = [_number(r["saving_pct"]) for r in changes]
    slow = max(_number(r["slowdown_pct"]) for r in changes)
    # the worst slowdown is the bound's (μ at its clock-bound end); beside the expected
    # saving, only the expected slowdown compares like with like
    worst = max(_number(r.get("slowdown_worst_pct", r["slowdown_pct"])) for r in changes)
    low, high = f"{min(pct):.1f}", f"{max(pct):.1f}"
    share = low if low == high else f"{low}–{high}"
    worst_text = f" ({worst:.1f} % at worst)" if f"{worst:.1f}" != f"{slow:.1f}" else ""
    return (
        f"{len(changes)} of {len(rows)} GPUs to change: their jobs use {share} % less energy "
        f"per unit of work ({energy_text(wh)} less per hour of their work), at most {slow:.1f} % "
        f"slower{worst_text}; {rest}"
    )


def energy_text(wh: float) -> str:
    """Wh below a kWh, where two decimals of kWh would read 0.00."""
    return f"{wh:,.0f} Wh" if wh < 1e3 else f"{wh / 1e3:,.2f} kWh"


def refusal_summary(rows: Sequence[Row], top: int = 3) -> str:
    """The commonest reasons GPUs got no recommendation: ``21 × only 1 busy sample; …``."""
    prefix = "no recommendation: "
    reasons = Counter(
        str(r["reason"]).removeprefix(prefix) for r in rows if r.get("recommended_limit_w") is None
    )
    return "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common(top))


def print_caps(
    rows: Sequence[Row],
    *,
    show_all: bool,
    limit: int | None = None,
    console: Console | None = None,
) -> None:
    """The changes as a table, largest saving first (the first ``limit``), then the total;
    ``show_all``: every GPU, the changes first."""
    console = console or Console()
    changes = cap_changes(rows)
    if show_all:
        shown = [*changes, *(r for r in rows if not is_cap_change(r))]
    else:
        shown = changes[:limit] if limit is not None else changes
    if shown:
        columns = (*CAP_COLUMNS, "reason") if show_all else CAP_COLUMNS
        console.print(table(shown, columns))
    if len(shown) < len(changes):
        typer.echo(f"(the {len(shown)} largest of {len(changes)} changes)")
    typer.echo(caps_total(rows))
    if not show_all:
        refused = refusal_summary(rows)
        if refused:
            typer.echo(f"  without a recommendation: {refused}")


def print_cooling(rows: Sequence[Row], *, console: Console | None = None) -> None:
    """A line per zone (its cluster too when there are several), then each zone's reason."""
    if not rows:
        typer.echo(
            "No cooling recommendation: no zone's cooling (the cooling measurement) is in "
            "the window."
        )
        return
    several = len({r.get("cluster") for r in rows}) > 1
    columns = (
        *(("cluster",) if several else ()), "zone", "current_setpoint_c",
        "recommended_setpoint_c", "predicted_max_inlet_c", "saving_w",
    )  # fmt: skip
    (console or Console()).print(table(rows, columns, title="Cooling setpoints"))
    for r in rows:
        typer.echo(f"{r['zone']}: {r['reason']}")


def print_placement(
    result: Mapping[str, Any], gpus: int, *, console: Console | None = None
) -> bool:
    """The best node and the command to use it, then the ranked alternatives; or, when no
    node can take the job, why each could not. Returns whether a node was found."""
    console = console or Console()
    candidates: list[Row] = result["candidates"]
    if not candidates:
        typer.echo(f"No node can take a {gpus}-GPU job now:")
        for reason, n in Counter(result["rejected"].values()).most_common():
            typer.echo(f"  {n} node{'s' if n != 1 else ''}: {reason}")
        if not result["rejected"]:
            typer.echo("  no node reported GPUs in the store's latest samples")
        return False
    columns = (
        "host", "gpus", "zone", "rack", "marginal_it_w", "marginal_cooling_w",
        "thermal_headroom_c",
    )  # fmt: skip
    console.print(table(candidates, columns))
    best = candidates[0]
    gpu_list = ",".join(str(g) for g in best["gpus"])
    typer.echo(f"Best: {best['host']}, GPU {gpu_list}: {best['reason']}")
    # On a line of its own and never wrapped, so it can be copied as it is.
    typer.echo(f"sbatch --nodelist={result['nodelist']} …")
    alternatives = [str(c["host"]) for c in candidates[1:]]
    if alternatives:
        typer.echo(f"Alternatives, best first: {', '.join(alternatives)}")
    return True


MODEL_COLUMNS = ("kind", "scope", "version", "samples", "mape_pct")


def print_models(rows: Sequence[Row], *, console: Console | None = None) -> None:
    """``wattwise models``: a line per model with its headline error, then the window they
    were fitted on and each model's errors and notes on lines of their own, which no table
    of 80 columns holds without cutting them to a word a line."""
    if not rows:
        typer.echo("No models: fit them with --refit, or set [models] registry_dir.")
        return
    headline = [{**r, "mape_pct": r["errors"].get("mape_pct")} for r in rows]
    (console or Console()).print(table(headline, MODEL_COLUMNS))
    windows = sorted({str(r["window"]) for r in rows})
    if len(windows) == 1:
        typer.echo(f"fitted on {windows[0]}")
    for row in rows:
        said = [f"errors {row['accuracy']}"] if row["errors"] else []
        said += [str(row["notes"])] if row["notes"] else []
        if len(windows) > 1:
            said.append(f"fitted on {row['window']}")
        typer.echo(f"{row['kind']} ({row['scope']}): {'; '.join(said) or '-'}")


BUDGET_COLUMNS = (
    "scope", "limit kW", "peak kW", "after kW", "plan", "work lost %", "applied",
)  # fmt: skip
"""Power in kW in the titles, not the cells, and the capped GPUs left to the reason line
below the table: so that a zone's name still fits 80 columns without a cell wrapping."""
EVENT_MARK = "*"


def budget_row(row: Row) -> dict[str, str]:
    """A plan's line of the ``recommend budget`` table, from its JSON dict."""
    share = row.get("applied_share")
    plan = "caps" if row.get("feasible") else "too low"
    return {
        "scope": str(row["scope"]) + (EVENT_MARK if row.get("event_id") else ""),
        "limit kW": _kilowatts(row.get("limit_w")),
        "peak kW": _kilowatts(row.get("predicted_peak_before_w")),
        "after kW": _kilowatts(row.get("predicted_peak_after_w")),
        "plan": plan if row.get("planned") else "none",
        "work lost %": cell(row.get("work_lost_pct")),
        "applied": f"{100 * share:.0f} %" if _finite(share) else "-",
    }


def print_budget(
    rows: Sequence[Row], *, in_force: Sequence[str], console: Console | None = None
) -> None:
    """A line per plan, then why each scope is planned as it is (and what an infeasible one
    should pause); says so when no budget (or none asked for) is in force."""
    if not rows:
        if in_force:
            typer.echo(
                f"None of those scopes has a budget in force; in force: {', '.join(in_force)}"
            )
        else:
            typer.echo(
                "No power budget in force: set [budgets] rack_w, zone_w or site_w, or add a "
                "power event (POST /v1/power-events)."
            )
        return
    (console or Console()).print(table([budget_row(r) for r in rows], BUDGET_COLUMNS))
    if any(r.get("event_id") for r in rows):
        typer.echo(f"{EVENT_MARK} the limit of a power event in force")
    typer.echo(
        "plan: none (peak under budgets.plan_above_share of the limit), caps (planned to "
        "hold it), too low (every GPU at its minimum limit may still draw more)"
    )
    for row in rows:
        reason = str(row.get("reason") or "")
        if reason:
            typer.echo(f"{row['scope']}: {reason}")
        pause = [str(p) for p in row.get("pause") or ()]
        if not row.get("feasible") and pause and not all(p in reason for p in pause):
            typer.echo(f"{row['scope']}: pause or move, least important first: {', '.join(pause)}")


HEADERS = {
    "gpu": "GPU",
    "gpus": "GPUs",
    "current_limit_w": "limit W",
    "recommended_limit_w": "to W",
    "saving_w": "saving W",
    "saving_pct": "saving %",
    "slowdown_pct": "slowdown %",
    "mape_pct": "MAPE %",
    "mae_w": "MAE W",
    "gpu_model": "GPU model",
    "train_samples": "trained on",
    "measured_w": "measured W",
    "predicted_w": "predicted W",
    "marginal_it_w": "IT W",
    "marginal_cooling_w": "cooling W",
    "thermal_headroom_c": "°C to slowdown",
    "current_setpoint_c": "setpoint °C",
    "recommended_setpoint_c": "recommended °C",
    "predicted_max_inlet_c": "max inlet °C",
}
"""Short column titles, so that a table of numbers fits 80 columns."""


NAMES = frozenset({"host", "gpus", "scope", "gpu_model", "workload", "zone", "cluster"})
"""Columns of names, which an operator copies: they are never cut or wrapped."""


def table(rows: Sequence[Row], columns: Sequence[str], *, title: str | None = None) -> Table:
    out = Table(title=title)
    for column in columns:
        out.add_column(HEADERS.get(column, column), no_wrap=column in NAMES)
    for row in rows:
        # Text, not markup: a zone or host named "[dc1]" would otherwise vanish as a style.
        out.add_row(*(Text(cell(row.get(c))) for c in columns))
    return out


def cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.1f}"
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def _kilowatts(value: object) -> str:
    return f"{float(value) / 1e3:,.1f}" if _finite(value) else "-"
