"""Cooling setpoints per zone: the warmest supply temperature that keeps every inlet and every
GPU within its limit until the next recommendation, moved at most one step per recommendation.

Inlet temperatures follow the supply temperature one to one at a given IT load
(recirculation depends on rack power, not on the setpoint), and a GPU's
temperature follows its inlet one to one at a given power. Cooling power is
IT heat over a COP that rises ``cop_gain_per_c`` per °C of supply temperature.

A setpoint stays in force until the next refresh, and a rack's jobs can start in
the meantime, so with fitted models (:mod:`wattwise.optimizer.models.thermal`)
each node's rise over the supply is ``a_node + b_rack·rack kW`` at the highest
power its rack drew in the model's window (or now, if higher), and each GPU's
temperature ``inlet + offset + R_th·power`` at its enforced power limit (the most
it can draw). The inlet limit keeps ``inlet_margin_c`` below ``max_inlet_c``, or
the inlet model's 99th-percentile cross-validated error if that is wider. Without
fits the rises seen now and ``cop_gain_per_c`` stand in, and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.models.thermal import CoolingModel, GpuThermalModel, InletModel
from wattwise.optimizer.recommend.settings import CoolingSettings
from wattwise.optimizer.recommend.types import CoolingRecommendation
from wattwise.optimizer.telemetry import GpuState, HostState, ZoneState

RESOLUTION_C = 0.1


@dataclass(frozen=True)
class ThermalFits:
    """Fitted thermal models by zone (inlets, cooling) and GPU model; any may be empty."""

    inlets: Mapping[str, InletModel] = field(default_factory=dict)
    cooling: Mapping[str, CoolingModel] = field(default_factory=dict)
    gpus: Mapping[str, GpuThermalModel] = field(default_factory=dict)


def recommend_cooling(
    zones: Sequence[ZoneState],
    hosts: Sequence[HostState],
    gpus: Sequence[GpuState],
    settings: CoolingSettings,
    fits: ThermalFits | None = None,
) -> list[CoolingRecommendation]:
    """One recommendation per zone with a known setpoint."""
    fits = fits or ThermalFits()
    return [_one(z, hosts, gpus, settings, fits) for z in zones if math.isfinite(z.setpoint_c)]


def _one(
    zone: ZoneState,
    hosts: Sequence[HostState],
    gpus: Sequence[GpuState],
    settings: CoolingSettings,
    fits: ThermalFits,
) -> CoolingRecommendation:
    supply = zone.supply_temp_c if math.isfinite(zone.supply_temp_c) else zone.setpoint_c
    mine_hosts = [h for h in hosts if h.zone == zone.zone]
    rise_of = _inlet_rises(mine_hosts, hosts, supply, fits.inlets.get(zone.zone))
    inlets = np.array([supply + r for r in rise_of.values()], dtype=np.float64)
    mine = [g for g in gpus if g.zone == zone.zone and math.isfinite(g.temp_c)]
    gpu_rise = np.array([_gpu_rise(g, rise_of, supply, fits.gpus.get(g.model)) for g in mine])
    cooling_fit = fits.cooling.get(zone.zone)
    gain = cooling_fit.cop_gain_per_c if cooling_fit is not None else settings.cop_gain_per_c
    gpu_limit = np.array([g.slowdown_temp_c - settings.gpu_temp_margin_c for g in mine])
    inlet_rise = float(np.max(inlets) - supply) if inlets.size else math.nan
    inlet_cap = settings.max_inlet_c - _inlet_margin_c(settings, fits.inlets.get(zone.zone))
    allowed = [settings.max_setpoint_c]
    if math.isfinite(inlet_rise):
        allowed.append(inlet_cap - inlet_rise)
    if gpu_rise.size:
        allowed.append(float(np.min(gpu_limit - gpu_rise)))
    highest_safe = math.floor(min(allowed) / RESOLUTION_C) * RESOLUTION_C
    current = zone.setpoint_c
    low = max(settings.min_setpoint_c, current - settings.max_step_c)
    high = min(settings.max_setpoint_c, current + settings.max_step_c)
    # Rounded to 1e-9 °C: floor(x / 0.1) * 0.1 gives 20.900000000000002, not 20.9.
    target = round(float(np.clip(highest_safe, low, high)), 9)
    delta = target - supply
    saving_share = 1.0 - math.exp(-gain * (target - current))
    cooling_w = zone.cooling_power_w if math.isfinite(zone.cooling_power_w) else 0.0
    return CoolingRecommendation(
        cluster=zone.cluster,
        zone=zone.zone,
        current_setpoint_c=current,
        recommended_setpoint_c=target,
        predicted_max_inlet_c=float(np.max(inlets) + delta) if inlets.size else math.nan,
        predicted_max_gpu_temp_c=float(np.max(gpu_rise) + target) if gpu_rise.size else math.nan,
        max_inlet_limit_c=settings.max_inlet_c,
        gpu_temp_limit_c=float(np.min(gpu_limit)) if gpu_limit.size else math.nan,
        saving_w=cooling_w * saving_share,
        saving_pct=100.0 * saving_share,
        max_step_c=settings.max_step_c,
        reason=f"{_reason(target, current, highest_safe, low)} ({_basis(zone.zone, fits)})",
    )


def _inlet_rises(
    mine: Sequence[HostState], hosts: Sequence[HostState], supply: float, fit: InletModel | None
) -> dict[str, float]:
    """Each node's inlet over the supply: the fitted ``a + b_rack·rack kW`` at its rack's peak
    power (or today's, if higher) where the model knows the node, else the rise seen now."""
    rise = {h.host: h.inlet_temp_c - supply for h in mine if math.isfinite(h.inlet_temp_c)}
    if fit is None:
        return rise
    rack_w: dict[str, float] = {}
    for h in hosts:
        if math.isfinite(h.node_power_w):
            rack_w[h.rack] = rack_w.get(h.rack, 0.0) + h.node_power_w
    index = {name: i for i, name in enumerate(fit.hosts)}
    slopes = fit.slopes_c_per_kw()
    for h in mine:
        i = index.get(h.host)
        if i is not None and h.rack in rack_w:
            load_w = rack_w[h.rack]
            if fit.peak_rack_power_w is not None:
                load_w = max(load_w, float(fit.peak_rack_power_w[i]))
            rise[h.host] = float(fit.offset_c[i] + slopes[i] * load_w / 1e3)
    return rise


def _inlet_margin_c(settings: CoolingSettings, fit: InletModel | None) -> float:
    """The flat margin, widened to the inlet model's own error where that is larger."""
    spread = fit.info.errors.get("p99_abs_c", 0.0) if fit is not None else 0.0
    return max(settings.inlet_margin_c, spread if math.isfinite(spread) else 0.0)


def _gpu_rise(
    gpu: GpuState, rise_of: dict[str, float], supply: float, fit: GpuThermalModel | None
) -> float:
    if fit is None or gpu.host not in rise_of or not math.isfinite(gpu.power_w):
        return gpu.temp_c - supply
    # A GPU idle now may start a job before the next refresh: take the most it may draw.
    limit = gpu.enforced_limit_w if math.isfinite(gpu.enforced_limit_w) else gpu.power_w
    return rise_of[gpu.host] + fit.offset_c + fit.r_th_c_per_w * max(gpu.power_w, limit)


def _basis(zone: str, fits: ThermalFits) -> str:
    inlet = (
        "fitted inlets at each rack's peak power"
        if zone in fits.inlets
        else "prior: inlets follow supply 1:1"
    )
    cop = fits.cooling.get(zone)
    if cop is None:
        gain = "prior COP gain (no cooling fit)"
    else:
        gain = f"COP gain {100 * cop.cop_gain_per_c:.1f} %/°C ({cop.gain_source})"
    gpu = "fitted GPU R_th" if fits.gpus else "GPU rise seen now"
    return f"{inlet}; {gpu}; {gain}"


def _reason(target: float, current: float, highest_safe: float, low: float) -> str:
    if highest_safe < low:
        return "limits are exceeded even one full step cooler: cool by the largest step allowed"
    if target > current:
        return f"every inlet and GPU stays within its limit at {target:.1f} °C"
    if target < current:
        return f"an inlet or GPU would exceed its limit: lower to {target:.1f} °C"
    return "already at the warmest safe setpoint"
