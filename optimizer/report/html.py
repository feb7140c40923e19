"""The report page: one HTML file with its styles and figures inline (no scripts, no
links, no fetched resources), readable in any browser without a network."""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from wattwise.optimizer.models.power import PowerModel
from wattwise.optimizer.recommend.types import CapRecommendation, changes_limit
from wattwise.optimizer.report import plots
from wattwise.optimizer.report.build import ReportData, Summary, summarize
from wattwise.optimizer.service.printing import energy_text

NO_FLEET_DATA = "No GPU or node power was reported in this window."
NO_MODELS = "No power model could be fitted: no GPU samples in the training window."
NO_CAPS = "No power cap is recommended: every GPU was refused (reasons below) or none reported."
NO_COOLING = (
    "No cooling data in this window: no zone wrote the cooling measurement and no node "
    "reported an inlet temperature (a BMC, the simulated fleet or a building-management "
    "integration provides them)."
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { margin-bottom: 0.2em; } .window { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure.plot { margin: 1em 0; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #444; max-width: 60em; } p.empty { font-style: italic; color: #a33; }
"""


@dataclass(frozen=True)
class Section:
    title: str
    body: str
    """HTML: figures with captions, tables, or the words saying why there is no plot."""


def render(data: ReportData) -> str:
    """The whole page for ``data``."""
    summary = summarize(data)
    sections = [
        _fleet_section(data, summary),
        _models_section(data),
        _caps_section(data),
        _cooling_section(data),
    ]
    window = f"{_utc(data.start_ns)} to {_utc(data.end_ns)} UTC"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>wattwise report, {html.escape(window)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>wattwise report</h1>",
        f'<p class="window">{html.escape(window)}, in {data.every_s} s buckets</p>',
        _summary_table(summary),
        *(f"<section><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in sections),
        "</body></html>",
    ]
    return "\n".join(parts)


def _summary_table(s: Summary) -> str:
    rows = [
        ("GPUs / nodes reporting", f"{s.gpu_count} / {s.host_count}"),
        ("GPU energy over the window", f"{_num(s.gpu_energy_kwh, 1)} kWh"),
        ("Node energy over the window (BMC)", f"{_num(s.node_energy_kwh, 1)} kWh"),
        (
            "GPU power, all GPUs together (mean over the window)",
            f"{_num(s.fleet_gpu_power_kw, 2)} kW ({_per_gpu_w(s)} per GPU)",
        ),
        (
            "Power limits to change (others keep theirs)",
            f"{s.recommended_caps} GPUs: their jobs "
            f"{energy_text(s.cap_saving_kwh_per_job_hour * 1e3)} less per hour of their work",
        ),
        (
            "Cooling setpoints: potential saving",
            f"{_power(s.cooling_saving_kw)}, {_num(s.cooling_saving_kwh_per_month, 0)} kWh "
            "per month",
        ),
    ]
    cells = "".join(
        f'<tr><th>{html.escape(k)}</th><td class="num">{html.escape(v)}</td></tr>' for k, v in rows
    )
    return f'<table class="summary">{cells}</table>'


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="plot">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _fleet_section(data: ReportData, s: Summary) -> Section:
    svg = plots.fleet_power_svg(data)
    if svg is None:
        return Section("Fleet power and energy", _empty(NO_FLEET_DATA))
    caption = (
        "Sum of the GPUs' power and of the nodes' power (BMC, where configured) per "
        f"{data.every_s} s bucket; below, the energy since the start of the window. "
        f"GPU energy is {_num(s.gpu_energy_kwh, 1)} kWh from the GPUs' energy counters."
    )
    return Section("Fleet power and energy", _figure(svg, caption))


def _models_section(data: ReportData) -> Section:
    if not data.power_models:
        return Section("Power models", _empty(NO_MODELS))
    figures = [
        _figure(plots.power_model_svg(model, data.gpus), _model_caption(model))
        for _, model in sorted(data.power_models.items())
    ]
    return Section("Power models: power versus load, per GPU model", "".join(figures))


def _model_caption(model: PowerModel) -> str:
    e = model.info.errors
    head = (
        f"{model.gpu_model}: dots are the {model.info.samples} bucket means the model was "
        "fitted on, coloured by SM clock; lines are the power the model predicts at the top "
        "clock (its demand held at the enforced limit, dashed above it) for work with little, "
        "typical and much memory activity among the samples."
    )
    if "mae_w" not in e:
        return f"{head} Too little data to cross-validate the model's error."
    words = (
        f" On GPUs (or time blocks) the fit never saw, it is off by {e['mae_w']:.0f} W on "
        f"average ({e['mape_pct']:.1f} %), root-mean-square {e['rmse_w']:.0f} W"
    )
    baselines = [
        f"{name} {errors['mae_w']:.0f} W ({errors['mape_pct']:.1f} %)"
        for name, errors in (
            ("a line in utilization alone", model.util_only_errors),
            ("gradient boosting on utilization, memory, clock and temperature",
             model.boosting_errors),
        )
        if "mae_w" in errors
    ]  # fmt: skip
    if baselines:
        words += "; fitted the same way, " + " and ".join(baselines)
    return f"{head}{words}."


def _caps_section(data: ReportData) -> Section:
    svg = plots.caps_svg(data.caps)
    changes = [c for c in data.caps if changes_limit(c.current_limit_w, c.recommended_limit_w)]
    wh = sum(c.saving_wh_per_job_hour for c in changes)
    caption = (
        "Top: the GPUs' current and recommended power limits. Bottom: each recommendation's "
        "predicted energy saving per unit of work against the slowdown it would cost. "
        f"{len(changes)} GPUs change (the others keep their limit): their jobs would use "
        f"{energy_text(wh)} less per hour of their work."
    )
    body = _empty(NO_CAPS) if svg is None else _figure(svg, caption)
    return Section("Recommended power caps", body + _refusals_table(data.caps))


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def refusal_counts(caps: tuple[CapRecommendation, ...]) -> Counter[str]:
    """GPUs without a recommendation per reason. Reasons differing only in their numbers
    are counted together, each number shown as its range across them:
    ``only 1 busy samples (need 5)`` and ``only 3 …`` → ``only 1–3 busy samples (need 5)``."""
    prefix = "no recommendation: "
    reasons = [c.reason.removeprefix(prefix) for c in caps if c.recommended_limit_w is None]
    alike: dict[str, list[str]] = {}
    for reason in reasons:
        alike.setdefault(_NUMBER.sub("#", reason), []).append(reason)
    return Counter({_with_ranges(template, found): len(found) for template, found in alike.items()})


def _with_ranges(template: str, reasons: list[str]) -> str:
    """``template`` with each ``#`` the number of ``reasons`` there, or their range."""
    columns = zip(*(_NUMBER.findall(r) for r in reasons), strict=True)
    filled = []
    for column in columns:
        values = sorted({float(v): v for v in column}.items())
        low, high = values[0][1], values[-1][1]
        filled.append(low if low == high else f"{low}–{high}")
    pieces = template.split("#")
    return "".join(p + (filled[i] if i < len(filled) else "") for i, p in enumerate(pieces))


def _refusals_table(caps: tuple[CapRecommendation, ...]) -> str:
    counts = refusal_counts(caps)
    if not counts:
        return "<p>Every reporting GPU received a recommendation.</p>"
    rows = "".join(
        f'<tr><td>{html.escape(reason)}</td><td class="num">{n}</td></tr>'
        for reason, n in counts.most_common()
    )
    return (
        '<table class="refusals"><tr><th>No recommendation because</th><th>GPUs</th></tr>'
        f"{rows}</table>"
    )


def _cooling_section(data: ReportData) -> Section:
    svg = plots.cooling_svg(data)
    if svg is None:
        return Section("Cooling zones", _empty(NO_COOLING))
    caption = (
        "Per zone: supply temperature and setpoint, the nodes' mean and hottest inlet "
        "temperature, the ASHRAE recommended inlet range 18–27 °C shaded, and the "
        "recommended setpoint dotted."
    )
    rows = "".join(
        f"<tr><td>{html.escape(c.zone)}</td><td class='num'>{c.current_setpoint_c:.1f}</td>"
        f"<td class='num'>{c.recommended_setpoint_c:.1f}</td>"
        f"<td class='num'>{_power(c.saving_w / 1000)}</td><td>{html.escape(c.reason)}</td></tr>"
        for c in data.cooling
    )
    table = (
        '<table class="cooling"><tr><th>zone</th><th>setpoint °C</th><th>recommended °C</th>'
        f"<th>saving</th><th>why</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return Section("Cooling zones", _figure(svg, caption) + table)


def _per_gpu_w(s: Summary) -> str:
    if not s.gpu_count or not math.isfinite(s.fleet_gpu_power_kw):
        return "n/a"
    return f"{s.fleet_gpu_power_kw * 1000 / s.gpu_count:,.0f} W"


def _num(value: float, digits: int) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _power(kw: float) -> str:
    """kW, or W when below one kW (a small fleet's saving would read as 0.00 kW)."""
    if math.isfinite(kw) and abs(kw) < 1.0:
        return f"{kw * 1000:.0f} W"
    return f"{_num(kw, 2)} kW"


def _utc(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M")
