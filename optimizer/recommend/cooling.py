"""Cooling setpoints per zone: the warmest supply temperature that keeps every inlet and every
GPU within its limit, moved at most one step per recommendation.

Inlet temperatures follow the supply temperature one to one at today's IT load
(recirculation depends on rack power, not on the setpoint), and a GPU's
temperature follows its inlet one to one at today's power. Cooling power is
IT heat over a COP that rises ``cop_gain_per_c`` per °C of supply temperature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from wattwise.optimizer.telemetry import GpuState, HostState, ZoneState

from .settings import CoolingSettings
from .types import CoolingRecommendation

RESOLUTION_C = 0.1


def recommend_cooling(
    zones: Sequence[ZoneState],
    hosts: Sequence[HostState],
    gpus: Sequence[GpuState],
    settings: CoolingSettings,
) -> list[CoolingRecommendation]:
    """One recommendation per zone with a known setpoint."""
    return [_one(z, hosts, gpus, settings) for z in zones if math.isfinite(z.setpoint_c)]


def _one(
    zone: ZoneState,
    hosts: Sequence[HostState],
    gpus: Sequence[GpuState],
    settings: CoolingSettings,
) -> CoolingRecommendation:
    supply = zone.supply_temp_c if math.isfinite(zone.supply_temp_c) else zone.setpoint_c
    inlets = np.array([h.inlet_temp_c for h in hosts if h.zone == zone.zone], dtype=np.float64)
    inlets = inlets[np.isfinite(inlets)]
    mine = [g for g in gpus if g.zone == zone.zone and math.isfinite(g.temp_c)]
    gpu_rise = np.array([g.temp_c for g in mine]) - supply
    gpu_limit = np.array([g.slowdown_temp_c - settings.gpu_temp_margin_c for g in mine])
    inlet_rise = float(np.max(inlets) - supply) if inlets.size else math.nan
    inlet_cap = settings.max_inlet_c - settings.inlet_margin_c
    allowed = [settings.max_setpoint_c]
    if math.isfinite(inlet_rise):
        allowed.append(inlet_cap - inlet_rise)
    if gpu_rise.size:
        allowed.append(float(np.min(gpu_limit - gpu_rise)))
    highest_safe = math.floor(min(allowed) / RESOLUTION_C) * RESOLUTION_C
    current = zone.setpoint_c
    low = max(settings.min_setpoint_c, current - settings.max_step_c)
    high = min(settings.max_setpoint_c, current + settings.max_step_c)
    target = float(np.clip(highest_safe, low, high))
    delta = target - supply
    saving_share = 1.0 - math.exp(-settings.cop_gain_per_c * (target - current))
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
        reason=_reason(target, current, highest_safe, low),
    )


def _reason(target: float, current: float, highest_safe: float, low: float) -> str:
    if highest_safe < low:
        return "limits are exceeded even one full step cooler: cool by the largest step allowed"
    if target > current:
        return f"every inlet and GPU stays within its limit at {target:.1f} °C"
    if target < current:
        return f"an inlet or GPU would exceed its limit: lower to {target:.1f} °C"
    return "already at the warmest safe setpoint"
