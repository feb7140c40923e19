"""Gather what the report shows: the window's telemetry, the fitted power models and the
recommendations of one refresh, and the summary numbers computed from them.

Everything is read through the :class:`~wattwise.optimizer.service.engine.Engine`'s
store and public methods, so the report shows exactly what ``wattwise optimizer
serve`` would recommend for the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import column, tag
from wattwise.optimizer.models.power import PowerModel
from wattwise.optimizer.recommend.types import (
    CapRecommendation,
    CoolingRecommendation,
    changes_limit,
)
from wattwise.optimizer.service.engine import Engine, Progress
from wattwise.optimizer.telemetry import Floats, Ints, Series, ZoneState

HOURS_PER_MONTH = 730.0
"""An average month (8760 h / 12), for savings "per month"."""
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ReportData:
    """The telemetry of the report's window and the optimizer's view of it."""

    start_ns: int
    end_ns: int
    every_s: int
    gpus: Series
    hosts: Series
    zones: Series
    power_models: dict[str, PowerModel]
    caps: tuple[CapRecommendation, ...]
    cooling: tuple[CoolingRecommendation, ...]
    zone_states: tuple[ZoneState, ...]


@dataclass(frozen=True)
class FleetPower:
    """Fleet totals per time bucket (W); NaN where nothing reported in a bucket."""

    time_ns: Ints
    gpu_w: Floats
    node_w: Floats


@dataclass(frozen=True)
class Summary:
    gpu_count: int
    host_count: int
    gpu_energy_kwh: float
    node_energy_kwh: float
    """NaN when no node reports ``node_power_w`` (no BMC configured)."""
    fleet_gpu_power_kw: float
    """All GPUs' power together, averaged over the window."""
    cap_saving_kw: float
    cooling_saving_kw: float
    recommended_caps: int
    """GPUs whose recommended limit differs from the one they have."""

    @property
    def saving_kw(self) -> float:
        return self.cap_saving_kw + self.cooling_saving_kw

    @property
    def saving_kwh_per_month(self) -> float:
        return self.saving_kw * HOURS_PER_MONTH


def gather(engine: Engine, since_s: float, progress: Progress | None = None) -> ReportData:
    """Refit and refresh ``engine``, then read the last ``since_s`` seconds of telemetry."""
    engine.refit(progress)
    snapshot = engine.refresh()
    end_ns = engine.clock.time_ns()
    start_ns = end_ns - int(since_s * 1e9)
    every_s, scope = engine.config.models.every_s, engine.scope
    store = engine.store
    return ReportData(
        start_ns=start_ns,
        end_ns=end_ns,
        every_s=every_s,
        gpus=store.gpu_series(start_ns, end_ns, every_s=every_s, scope=scope),
        hosts=store.host_series(start_ns, end_ns, every_s=every_s, scope=scope),
        zones=store.zone_series(start_ns, end_ns, every_s=every_s, scope=scope),
        power_models=dict(engine.fitted.power),
        caps=snapshot.caps,
        cooling=snapshot.cooling,
        zone_states=snapshot.zones,
    )


def sum_per_bucket(series: Series, name: str, times: Ints) -> Floats:
    """Sum of column ``name`` over all series in each bucket of ``times`` (NaN if none)."""
    values = column(series, name)
    known = np.isfinite(values)
    slot = np.searchsorted(times, series.time_ns)
    total = np.bincount(slot[known], weights=values[known], minlength=times.size)
    reported = np.bincount(slot[known], minlength=times.size)
    return np.where(reported > 0, total[: times.size], np.nan)


def fleet_power(data: ReportData) -> FleetPower:
    times = np.unique(np.concatenate([data.gpus.time_ns, data.hosts.time_ns]))
    return FleetPower(
        time_ns=times,
        gpu_w=sum_per_bucket(data.gpus, "power_w", times),
        node_w=sum_per_bucket(data.hosts, "node_power_w", times),
    )


def cumulative_kwh(power_w: Floats, every_s: int) -> Floats:
    """Energy since the window's start, each bucket's mean power held for ``every_s``."""
    return np.cumsum(np.nan_to_num(power_w, nan=0.0)) * every_s / J_PER_KWH


def gpu_energy_kwh(data: ReportData) -> float:
    """From the GPUs' energy counters where they report (exact), else from their power."""
    energy_j = column(data.gpus, "energy_j")
    if np.isfinite(energy_j).any():
        return float(np.nansum(energy_j)) / J_PER_KWH
    power_w = column(data.gpus, "power_w")
    return float(np.nansum(power_w)) * data.every_s / J_PER_KWH


def summarize(data: ReportData) -> Summary:
    power = fleet_power(data)
    node_w = power.node_w
    node_kwh = float(np.nansum(node_w)) * data.every_s / J_PER_KWH
    changes = [c for c in data.caps if changes_limit(c.current_limit_w, c.recommended_limit_w)]
    hosts, gpus = tag(data.gpus, "host"), tag(data.gpus, "gpu")
    gpu_ids = {(str(h), str(g)) for h, g in zip(hosts, gpus, strict=True)}
    return Summary(
        gpu_count=len(gpu_ids),
        host_count=len({str(h) for h in tag(data.hosts, "host")} | {h for h, _ in gpu_ids}),
        gpu_energy_kwh=gpu_energy_kwh(data),
        node_energy_kwh=node_kwh if np.isfinite(node_w).any() else float("nan"),
        fleet_gpu_power_kw=_mean_or_nan(power.gpu_w) / 1000.0,
        cap_saving_kw=sum(c.saving_w for c in changes) / 1000.0,
        cooling_saving_kw=sum(c.saving_w for c in data.cooling) / 1000.0,
        recommended_caps=len(changes),
    )


def _mean_or_nan(values: Floats) -> float:
    known = values[np.isfinite(values)]
    return float(known.mean()) if known.size else float("nan")
