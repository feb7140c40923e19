"""The report's figures, drawn with matplotlib's object API (no pyplot, so no global figure
state) and rendered to inline SVG markup that needs no network to display.

Each function returns the SVG, or ``None`` when there is nothing to draw; the page
then says so in words instead of showing an empty plot.
"""

from __future__ import annotations

import io
import re

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from wattwise.optimizer.models.common import column, tag, take
from wattwise.optimizer.models.power import PowerModel
from wattwise.optimizer.recommend.types import CapRecommendation, CoolingRecommendation
from wattwise.optimizer.report.build import ReportData, cumulative_kwh, fleet_power
from wattwise.optimizer.telemetry import Floats, Ints, Series

ASHRAE_LOW_C, ASHRAE_HIGH_C = 18.0, 27.0
MAX_SCATTER_POINTS = 4000
"""Enough to show the shape of a fleet-day without making the page heavy."""
MAX_CAP_BARS = 48
MAX_ZONES = 6
CURVES = (
    ("little memory activity (10th percentile)", 0.1, "tab:red"),
    ("typical memory activity (median)", 0.5, "tab:purple"),
    ("much memory activity (90th percentile)", 0.9, "tab:blue"),
)
"""Power curves drawn: label, quantile of the samples' memory-to-GPU utilization ratio."""

_XML_PROLOGUE = re.compile(r"<\?xml.*?\?>\s*|<!DOCTYPE.*?>\s*", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')
_ID_OR_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)')


def to_svg(fig: Figure, name: str) -> str:
    """``fig`` as SVG markup for inlining in HTML5.

    The HTML parser puts ``<svg>`` in the SVG namespace by itself, so the XML
    prologue, the namespace declarations and the RDF metadata (all of them
    ``http://`` URIs, though never fetched) are dropped. Text stays text. Every
    element id, and every reference to one, is prefixed with ``name``: matplotlib
    numbers ids per figure (``axes_1``), so figures on one page would otherwise clash.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    markup = _METADATA.sub("", _XML_PROLOGUE.sub("", buffer.getvalue()))
    markup = _ID_OR_REFERENCE.sub(lambda m: f"{m.group(1)}{name}-", _NAMESPACES.sub("", markup))
    return markup.replace("<svg ", f'<svg data-plot="{name}" ', 1)


def _dates(time_ns: Ints) -> np.ndarray:
    return time_ns.astype("datetime64[ns]")


def _time_axis(ax: Axes) -> None:
    # matplotlib.dates has no annotations on these constructors
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)


def fleet_power_svg(data: ReportData) -> str | None:
    power = fleet_power(data)
    if not (np.isfinite(power.gpu_w).any() or np.isfinite(power.node_w).any()):
        return None
    fig = Figure(figsize=(9, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    when = _dates(power.time_ns)
    for label, watts in (("nodes (BMC)", power.node_w), ("GPUs", power.gpu_w)):
        if np.isfinite(watts).any():
            top.plot(when, watts / 1000.0, label=label)
            bottom.plot(when, cumulative_kwh(watts, data.every_s), label=label)
    top.set_ylabel("power (kW)")
    top.legend(loc="upper left")
    bottom.set_ylabel("energy since start (kWh)")
    for ax in (top, bottom):
        _time_axis(ax)
    top.set_title("Fleet power and energy")
    return to_svg(fig, "fleet-power")


def power_model_svg(model: PowerModel, gpus: Series) -> str:
    """``model``'s power against utilization over the model's real samples, for work whose
    memory activity per unit of utilization is low, typical and high among the samples: the
    measured power it predicts and, dashed, the demand above the limit that the limit holds
    back."""
    rows = take(gpus, tag(gpus, "model") == model.gpu_model)
    util, power = column(rows, "util_gpu_pct"), column(rows, "power_w")
    clock = column(rows, "sm_clock_mhz")
    shown = _sample(np.flatnonzero(np.isfinite(util) & np.isfinite(power)))
    fig = Figure(figsize=(9, 5))
    ax = fig.subplots()
    top = model.top_clock_mhz
    dots = ax.scatter(util[shown], power[shown], c=clock[shown], s=8, alpha=0.5, vmin=0, vmax=top)
    fig.colorbar(dots, ax=ax, label="SM clock (MHz)")
    for label, quantile, color in CURVES:
        curve = _curve(model, rows, quantile)
        x = curve.values["util_gpu_pct"]
        measured, demand = model.predict(curve), model.demand_w(curve)
        ax.plot(x, measured, color=color, lw=2.5, label=label)
        above = demand > measured
        if above.any():
            ax.plot(x[above], demand[above], color=color, lw=1.5, ls="--")
    ax.plot([], [], color="grey", lw=1.5, ls="--", label="demand above the limit")
    ax.set_xlabel("GPU utilization (%)")
    ax.set_ylabel("power (W)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(f"{model.gpu_model}: power vs utilization — {_error_title(model)}")
    return to_svg(fig, f"power-model-{_slug(model.gpu_model)}")


def _curve(model: PowerModel, rows: Series, quantile: float) -> Series:
    """Inputs along utilization 0..100 % at the top clock and the samples' median limit and
    temperature; memory and GPM activities at the ``quantile`` of the busy samples' ratio of
    memory utilization to utilization (GPM activities at their median ratio)."""
    util = np.linspace(0.0, 100.0, 51)
    gpu_util = column(rows, "util_gpu_pct")
    busy = gpu_util > 5.0

    def ratio(name: str, q: float) -> float:
        values = column(rows, name)[busy] / gpu_util[busy]
        values = values[np.isfinite(values)]
        return float(np.quantile(values, q)) if values.size else 0.0

    n = util.size
    values = {
        "util_gpu_pct": util,
        "util_mem_pct": util * ratio("util_mem_pct", quantile),
        "sm_clock_mhz": np.full(n, model.top_clock_mhz),
        "capped_share": np.zeros(n),
        "temp_c": np.full(n, _median(column(rows, "temp_c"))),
        "enforced_limit_w": np.full(n, _median(column(rows, "enforced_limit_w"))),
    }
    for name in model.gpm_inputs:
        values[name] = util * ratio(name, 0.5)
    return Series(np.zeros(n, dtype=np.int64), {}, values)


def _median(values: Floats) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


def _error_title(model: PowerModel) -> str:
    errors = model.info.errors
    if "mae_w" not in errors:
        return "too few samples for a cross-validated error"
    return f"CV error {errors['mae_w']:.0f} W ({errors['mape_pct']:.1f} %)"


def _sample(index: Ints, limit: int = MAX_SCATTER_POINTS) -> Ints:
    if index.size <= limit:
        return index
    return np.sort(np.random.default_rng(0).choice(index, size=limit, replace=False))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "gpu"


def caps_svg(caps: tuple[CapRecommendation, ...]) -> str | None:
    """Current against recommended limit per GPU (a histogram of changes when there are
    many), and the predicted saving against the slowdown each would cost."""
    chosen = [c for c in caps if c.recommended_limit_w is not None]
    if not chosen:
        return None
    fig = Figure(figsize=(9, 6.5))
    limits, tradeoff = fig.subplots(2, 1, height_ratios=(3, 2))
    if len(chosen) <= MAX_CAP_BARS:
        _cap_bars(limits, chosen)
    else:
        _cap_histogram(limits, chosen)
    saving = np.array([c.saving_w for c in chosen])
    slowdown = np.array([c.slowdown_pct for c in chosen])
    tradeoff.scatter(slowdown, saving, s=18, color="tab:green")
    tradeoff.set_xlabel("predicted slowdown vs the maximum limit (%)")
    tradeoff.set_ylabel("predicted saving (W)")
    tradeoff.grid(alpha=0.3)
    fig.subplots_adjust(hspace=0.6)
    return to_svg(fig, "caps")


def _cap_bars(ax: Axes, chosen: list[CapRecommendation]) -> None:
    x = np.arange(len(chosen))
    current = [c.current_limit_w for c in chosen]
    recommended = [c.recommended_limit_w or np.nan for c in chosen]
    ax.bar(x - 0.2, current, width=0.4, color="0.6", label="current limit")
    ax.bar(x + 0.2, recommended, width=0.4, color="tab:blue", label="recommended limit")
    ax.set_xticks(x, [f"{c.host}/{c.gpu}" for c in chosen], rotation=90, fontsize=7)
    ax.set_ylabel("power limit (W)")
    ax.legend(loc="lower right")
    ax.set_title("Power caps: current and recommended")


def _cap_histogram(ax: Axes, chosen: list[CapRecommendation]) -> None:
    change = np.array([(c.recommended_limit_w or np.nan) - c.current_limit_w for c in chosen])
    ax.hist(change[np.isfinite(change)], bins=30, color="tab:blue")
    ax.set_xlabel("recommended minus current limit (W)")
    ax.set_ylabel("GPUs")
    ax.set_title(f"Power caps: change of limit over {len(chosen)} GPUs")


ZoneKey = tuple[str, str]


def cooling_svg(data: ReportData) -> str | None:
    """Supply, setpoint and inlet temperatures per zone against the ASHRAE band."""
    keys = _zone_keys(data)[:MAX_ZONES]
    if not keys:
        return None
    fig = Figure(figsize=(9, 2.6 * len(keys) + 0.6))
    axes = np.atleast_1d(fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0])
    recommended = {(c.cluster, c.zone): c for c in data.cooling}
    for ax, key in zip(axes, keys, strict=True):
        _zone_panel(ax, data, key, recommended.get(key))
    axes[-1].set_xlabel("time (UTC)")
    return to_svg(fig, "cooling")


def _zone_keys(data: ReportData) -> list[ZoneKey]:
    inlet = np.isfinite(column(data.hosts, "inlet_temp_c"))
    from_hosts = zip(tag(data.hosts, "cluster")[inlet], tag(data.hosts, "zone")[inlet], strict=True)
    from_zones = zip(tag(data.zones, "cluster"), tag(data.zones, "zone"), strict=True)
    return sorted({(str(c), str(z)) for c, z in [*from_zones, *from_hosts]})


def _of_zone(series: Series, key: ZoneKey) -> Series:
    return take(series, (tag(series, "cluster") == key[0]) & (tag(series, "zone") == key[1]))


def _zone_panel(
    ax: Axes, data: ReportData, key: ZoneKey, rec: CoolingRecommendation | None
) -> None:
    ax.axhspan(ASHRAE_LOW_C, ASHRAE_HIGH_C, color="tab:green", alpha=0.12, label="ASHRAE 18–27 °C")
    zone = _of_zone(data.zones, key)
    for name, label, style in (("supply_temp_c", "supply", "-"), ("setpoint_c", "setpoint", "--")):
        if np.isfinite(column(zone, name)).any():
            ax.plot(_dates(zone.time_ns), column(zone, name), style, label=label)
    times, mean_c, max_c = _inlet_per_bucket(_of_zone(data.hosts, key))
    if times.size:
        ax.plot(_dates(times), mean_c, color="tab:orange", label="inlet (mean)")
        ax.plot(_dates(times), max_c, color="tab:red", label="inlet (hottest node)")
    if rec is not None:
        ax.axhline(rec.recommended_setpoint_c, color="tab:purple", ls=":", lw=2)
        ax.plot([], [], color="tab:purple", ls=":", lw=2, label="recommended setpoint")
    ax.set_ylabel("°C")
    ax.set_title(f"zone {key[1]} ({key[0]})", fontsize=10)
    _time_axis(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)


def _inlet_per_bucket(hosts: Series) -> tuple[Ints, Floats, Floats]:
    inlet = column(hosts, "inlet_temp_c")
    known = np.isfinite(inlet)
    times = np.unique(hosts.time_ns[known])
    slot = np.searchsorted(times, hosts.time_ns[known])
    counts = np.bincount(slot, minlength=times.size)
    mean_c = np.bincount(slot, weights=inlet[known], minlength=times.size) / np.maximum(counts, 1)
    max_c = np.full(times.size, -np.inf)
    np.maximum.at(max_c, slot, inlet[known])
    return times, mean_c, max_c
