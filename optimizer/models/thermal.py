"""Thermal models: GPU temperature over its inlet, node inlets over the zone's supply, and the
cooling plant's COP over the supply temperature.

- GPU, per GPU model: ``temp_c = inlet_c + offset_c + r_th·power_w`` (the air
  reaching the heatsink is pre-warmed by the tray, hence an offset).
- Inlet, per zone: ``inlet_c = supply_c + a_node + b_rack·rack_power_kw`` — each
  node's place on the floor and in its rack is its own intercept ``a_node``, hot-air
  recirculation grows with the rack's power: ``b_rack`` per rack (racks at open row
  ends recirculate several times more than the middle of a row), shrunk toward the
  zone's common slope ``b`` where a rack's power barely moved. The model also keeps
  the highest power each rack drew in its window: the load a setpoint must be safe for.
- Cooling, per zone: ``cooling_w = it_w / COP``, ``COP = cop20·e^{g·(supply − 20 °C)}``
  (a log-linear fit; ``g`` is only identifiable when the supply moved, else the prior).

All fits are least squares with grouped cross-validation (whole GPUs or whole
nodes held out) so the reported errors are on data the fit never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import (
    Bools,
    Ints,
    ModelInfo,
    column,
    error_summary,
    factorize,
    group_codes,
    grouped_cv_predictions,
    join_column,
    subsample,
    tag,
    take,
    window_of,
)
from wattwise.optimizer.telemetry import Floats, Series

PRIOR_COP_AT_20C = 4.0
PRIOR_COP_GAIN_PER_C = 0.035
"""+3.5 % COP per °C of supply: the middle of the published 2–5 % per °C."""
MIN_SUPPLY_SPREAD_C = 0.5
"""The COP's temperature gain needs the supply to have moved at least this much."""
MAX_FIT_ROWS = 200_000
VERSION = 1
MAX_CV_BLOCK_S, MIN_CV_BLOCK_S = 1800.0, 120.0
MIN_RACK_SPREAD_KW = 0.5
"""A rack's own recirculation slope counts as much as the zone's only once its power has
spread this much (standard deviation): less movement cannot separate slope from noise."""


@dataclass(frozen=True)
class GpuThermalModel:
    gpu_model: str
    offset_c: float
    r_th_c_per_w: float
    info: ModelInfo

    def temp_c(self, inlet_c: Floats, power_w: Floats) -> Floats:
        return np.asarray(inlet_c + self.offset_c + self.r_th_c_per_w * power_w)


@dataclass(frozen=True)
class InletModel:
    zone: str
    hosts: tuple[str, ...]
    offset_c: Floats
    """``a_node`` per host of :attr:`hosts`."""
    recirculation_c_per_kw: float
    """The zone's common slope ``b`` (one number for the whole zone)."""
    info: ModelInfo
    rack_recirculation_c_per_kw: Floats | None = None
    """``b_rack`` of each host's rack; None in models stored before racks had their own."""
    peak_rack_power_w: Floats | None = None
    """Highest power (1-minute mean) each host's rack drew in the fitted window."""

    def slopes_c_per_kw(self) -> Floats:
        """Recirculation slope of each host: its rack's where known, else the zone's."""
        if self.rack_recirculation_c_per_kw is None:
            return np.full(len(self.hosts), self.recirculation_c_per_kw)
        return self.rack_recirculation_c_per_kw

    def inlet_c(self, supply_c: float, rack_power_w: Floats) -> Floats:
        """Inlet of each host of :attr:`hosts` at a supply temperature and rack powers."""
        return np.asarray(supply_c + self.offset_c + self.slopes_c_per_kw() * rack_power_w / 1e3)


@dataclass(frozen=True)
class CoolingModel:
    zone: str
    cop_at_20c: float
    cop_gain_per_c: float
    gain_source: str
    """"fitted" when the supply moved enough to see the gain, else "prior"."""
    info: ModelInfo

    def cop(self, supply_c: float) -> float:
        return self.cop_at_20c * math.exp(self.cop_gain_per_c * (supply_c - 20.0))


def fit_gpu_thermal(gpus: Series, hosts: Series, *, folds: int = 5) -> dict[str, GpuThermalModel]:
    """One model per GPU model; rows need the node's inlet in the same time bucket.

    At most :data:`MAX_FIT_ROWS` rows per GPU model are joined and fitted."""
    known = np.isfinite(column(gpus, "temp_c")) & np.isfinite(column(gpus, "power_w"))
    model_codes, model_names = factorize(tag(gpus, "model", "unknown"))
    sample = np.zeros(len(gpus), dtype=np.bool_)
    for code in range(len(model_names)):
        sample |= subsample(known & (model_codes == code), MAX_FIT_ROWS)
    gpus = take(gpus, sample)
    inlet = join_column(gpus, hosts, "inlet_temp_c")
    rise = column(gpus, "temp_c") - inlet
    power = column(gpus, "power_w")
    names = tag(gpus, "model", "unknown")
    gpu_ids = group_codes(tag(gpus, "host"), tag(gpus, "gpu"))
    out: dict[str, GpuThermalModel] = {}
    model_codes, model_names = factorize(names)
    for code, name in enumerate(model_names):
        usable = subsample(
            (model_codes == code) & np.isfinite(rise) & np.isfinite(power), MAX_FIT_ROWS
        )
        if usable.sum() < 3:
            continue
        design = np.column_stack([np.ones(int(usable.sum())), power[usable]])
        truth = rise[usable]
        cv = grouped_cv_predictions(_linear_fitter(design, truth), gpu_ids[usable], folds)
        coef = _lstsq(design, truth)
        start, end = window_of(gpus, usable)
        info = ModelInfo(
            "gpu_thermal",
            str(name),
            VERSION,
            start,
            end,
            int(usable.sum()),
            error_summary(truth + inlet[usable], cv + inlet[usable], "c"),
            "temp = inlet + offset + R_th·power; GPUs held out in CV",
        )
        out[str(name)] = GpuThermalModel(str(name), float(coef[0]), float(coef[1]), info)
    return out


def fit_inlet_models(hosts: Series, zones: Series, *, folds: int = 5) -> dict[str, InletModel]:
    """Per zone: each node's offset over the supply and the zone's recirculation per rack kW."""
    supply = _zone_supply(hosts, zones)
    rise = column(hosts, "inlet_temp_c") - supply
    rack_kw = rack_power_w(hosts) / 1e3
    host_codes, host_names = factorize(tag(hosts, "host"))
    rack_codes, _ = factorize(tag(hosts, "rack"))
    out: dict[str, InletModel] = {}
    zone_codes, distinct_zones = factorize(tag(hosts, "zone"))
    for code, zone in enumerate(distinct_zones):
        usable = (zone_codes == code) & np.isfinite(rise) & np.isfinite(rack_kw)
        if usable.sum() < 3:
            continue
        rows = _Rows(host_codes[usable], rack_codes[usable], rack_kw[usable], rise[usable])
        cv = grouped_cv_predictions(
            rows.fitter(), _time_groups(hosts.time_ns[usable], folds), folds
        )
        fit = rows.fit()
        present = np.unique(rows.node)
        peak_kw = np.full(fit.offsets.shape, -np.inf)
        np.maximum.at(peak_kw, rows.node, rows.x)
        start, end = window_of(hosts, usable)
        info = ModelInfo(
            "inlet",
            str(zone),
            VERSION,
            start,
            end,
            int(usable.sum()),
            _inlet_errors(rows.y, cv),
            "inlet = supply + a_node + b_rack·rack_kW; blocks of time held out in CV",
        )
        out[str(zone)] = InletModel(
            str(zone),
            tuple(str(h) for h in host_names[present]),
            fit.offsets[present],
            fit.common_slope,
            info,
            rack_recirculation_c_per_kw=fit.node_slopes[present],
            peak_rack_power_w=1e3 * peak_kw[present],
        )
    return out


def _inlet_errors(truth: Floats, cv: Floats) -> dict[str, float]:
    """The usual summary plus the 99th percentile of the absolute error: the spread a margin
    on a predicted inlet has to cover."""
    errors = error_summary(truth, cv, "c")
    known = np.isfinite(truth) & np.isfinite(cv)
    if known.any():
        errors["p99_abs_c"] = float(np.percentile(np.abs(cv[known] - truth[known]), 99))
    return errors


def fit_cooling_models(zones: Series) -> dict[str, CoolingModel]:
    """Per zone: COP at 20 °C supply and its gain per °C (prior gain when the supply was flat)."""
    supply = column(zones, "supply_temp_c")
    supply = np.where(np.isfinite(supply), supply, column(zones, "setpoint_c"))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_cop = np.log(column(zones, "it_power_w") / column(zones, "cooling_power_w"))
    codes, names = factorize(tag(zones, "zone"))
    out: dict[str, CoolingModel] = {}
    for code, zone in enumerate(names):
        usable = (codes == code) & np.isfinite(supply) & np.isfinite(log_cop)
        if usable.sum() < 2:
            continue
        x, y = supply[usable] - 20.0, log_cop[usable]
        if np.ptp(x) >= MIN_SUPPLY_SPREAD_C:
            gain, log_cop20 = np.polyfit(x, y, 1)
            source = "fitted"
        else:
            gain, source = PRIOR_COP_GAIN_PER_C, "prior"
            log_cop20 = float(np.mean(y - gain * x))
        predicted = np.exp(log_cop20 + gain * x)
        start, end = window_of(zones, usable)
        info = ModelInfo(
            "cooling",
            str(zone),
            VERSION,
            start,
            end,
            int(usable.sum()),
            error_summary(np.exp(y), predicted, "cop"),
            f"COP gain per °C {gain:.4f} ({source}); in-sample error",
        )
        out[str(zone)] = CoolingModel(
            str(zone), float(np.exp(log_cop20)), float(gain), source, info
        )
    return out


def rack_power_w(hosts: Series) -> Floats:
    """Each ``host_series`` row's rack power: the sum of ``node_power_w`` of its rack's nodes
    in the same bucket (missing node powers count as absent, not zero)."""
    ids = group_codes(tag(hosts, "rack"), hosts.time_ns)
    power = column(hosts, "node_power_w")
    sums = np.bincount(ids, weights=np.nan_to_num(power, nan=0.0))
    known = np.bincount(ids, weights=np.isfinite(power).astype(np.float64))
    return np.where(known[ids] > 0, sums[ids], np.nan)


def _zone_supply(hosts: Series, zones: Series) -> Floats:
    supply = column(zones, "supply_temp_c")
    supply = np.where(np.isfinite(supply), supply, column(zones, "setpoint_c"))
    with_supply = Series(zones.time_ns, {"zone": tag(zones, "zone")}, {"supply": supply})
    return join_column(hosts, with_supply, "supply", on=("zone",))


def _time_groups(time_ns: Ints, folds: int) -> Ints:
    """Contiguous blocks of time to hold out: 30 minutes, or a fold's share of a shorter
    window (one block covering everything would leave nothing to fit on)."""
    span_s = float(time_ns.max() - time_ns.min()) / 1e9 if time_ns.size else 0.0
    block_s = min(MAX_CV_BLOCK_S, max(span_s / folds, MIN_CV_BLOCK_S))
    return np.asarray((time_ns - time_ns.min()) // int(block_s * 1e9), dtype=np.int64)


@dataclass(frozen=True)
class _SlopeFit:
    common_slope: float
    node_slopes: Floats
    """Slope of each node's rack (indexed by node code)."""
    offsets: Floats


@dataclass(frozen=True)
class _Rows:
    """One zone's inlet rows: node and rack codes, rack kW (x) and rise over supply (y)."""

    node: Ints
    rack: Ints
    x: Floats
    y: Floats

    def fit(self, train: Bools | None = None) -> _SlopeFit:
        """Node intercepts with one slope per rack (within-node demeaning), each rack's slope
        shrunk toward the zone's common one by :data:`MIN_RACK_SPREAD_KW` worth of data."""
        keep = np.ones(self.node.shape, dtype=np.bool_) if train is None else train
        node, rack, x, y = self.node[keep], self.rack[keep], self.x[keep], self.y[keep]
        nodes, racks = int(self.node.max()) + 1, int(self.rack.max()) + 1
        n = np.maximum(np.bincount(node, minlength=nodes), 1)
        x_mean = np.bincount(node, weights=x, minlength=nodes) / n
        y_mean = np.bincount(node, weights=y, minlength=nodes) / n
        dx, dy = x - x_mean[node], y - y_mean[node]
        sxx = np.bincount(rack, weights=dx * dx, minlength=racks)
        sxy = np.bincount(rack, weights=dx * dy, minlength=racks)
        common = float(sxy.sum() / sxx.sum()) if sxx.sum() > 1e-9 else 0.0
        prior = np.bincount(rack, minlength=racks) * MIN_RACK_SPREAD_KW**2
        slopes = np.where(
            sxx + prior > 0, (sxy + prior * common) / np.maximum(sxx + prior, 1e-12), common
        )
        rack_of_node = np.zeros(nodes, dtype=np.int64)
        rack_of_node[self.node] = self.rack
        node_slopes = slopes[rack_of_node]
        return _SlopeFit(common, node_slopes, np.asarray(y_mean - node_slopes * x_mean))

    def fitter(self) -> Callable[[Bools], Callable[[Bools], Floats]]:
        def fit(train: Bools) -> Callable[[Bools], Floats]:
            f = self.fit(train)
            return lambda test: np.asarray(
                f.offsets[self.node[test]] + f.node_slopes[self.node[test]] * self.x[test]
            )

        return fit


def _linear_fitter(design: Floats, y: Floats) -> Callable[[Bools], Callable[[Bools], Floats]]:
    def fit(train: Bools) -> Callable[[Bools], Floats]:
        coef = _lstsq(design[train], y[train])
        return lambda test: np.asarray(design[test] @ coef)

    return fit


def _lstsq(design: Floats, y: Floats) -> Floats:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return np.asarray(coef, dtype=np.float64)
