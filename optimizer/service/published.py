"""Every number a recommendation publishes, checked against physical bounds first.

Junk telemetry is dropped where it enters (:mod:`wattwise.optimizer.store.sanity`),
but a model can still extrapolate into nonsense (a stored model from a bad fit, a
fleet far outside anything it was fitted on). With node power at ±1e30 placement
ranked a host at "+2.3e28 W IT" and cooling published an inlet of 4.95e29 °C. A
recommendation with a number outside :mod:`wattwise.optimizer.bounds` is published
as a refusal that says which number and why; the number itself never is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from wattwise.optimizer import bounds as b
from wattwise.optimizer.recommend.settings import CoolingSettings
from wattwise.optimizer.recommend.types import (
    CapRecommendation,
    CoolingRecommendation,
    PlacementResult,
)

REFUSED = "refused"


def checked_caps(caps: Iterable[CapRecommendation]) -> list[CapRecommendation]:
    """Caps as recommended, or refused (no limit) where a number is impossible."""
    out = []
    for rec in caps:
        problem = None
        if rec.recommended_limit_w is not None:
            problem = _first_problem(
                ("recommended_limit_w", rec.recommended_limit_w, _limit_bounds(rec)),
                ("saving_w", rec.saving_w, b.symmetric(b.GPU_POWER_W)),
                ("saving_pct", rec.saving_pct, b.symmetric(b.PERCENT)),
                ("slowdown_pct", rec.slowdown_pct, (-100.0, 10_000.0)),
            )
        if problem is None:
            out.append(rec)
            continue
        out.append(
            dataclasses.replace(
                rec,
                recommended_limit_w=None,
                saving_w=0.0,
                saving_pct=0.0,
                slowdown_pct=0.0,
                reason=f"{REFUSED}: {problem}; the telemetry or the fitted model is wrong",
            )
        )
    return out


def checked_cooling(
    cooling: Iterable[CoolingRecommendation], settings: CoolingSettings
) -> list[CoolingRecommendation]:
    """Setpoints as recommended, or refused (the setpoint stays) where a number is impossible."""
    out = []
    for rec in cooling:
        problem = _first_problem(
            (
                "recommended_setpoint_c",
                rec.recommended_setpoint_c,
                (settings.min_setpoint_c, settings.max_setpoint_c),
            ),
            ("predicted_max_inlet_c", rec.predicted_max_inlet_c, b.AIR_TEMP_C),
            ("predicted_max_gpu_temp_c", rec.predicted_max_gpu_temp_c, b.CHIP_TEMP_C),
            ("saving_w", rec.saving_w, b.symmetric(b.FACILITY_POWER_W)),
            ("saving_pct", rec.saving_pct, b.symmetric(b.PERCENT)),
        )
        if problem is None:
            out.append(rec)
            continue
        current = rec.current_setpoint_c
        out.append(
            dataclasses.replace(
                rec,
                recommended_setpoint_c=current if b.within(current, b.COOLANT_TEMP_C) else math.nan,
                predicted_max_inlet_c=math.nan,
                predicted_max_gpu_temp_c=math.nan,
                saving_w=0.0,
                saving_pct=0.0,
                reason=f"{REFUSED}: {problem}; the setpoint stays where it is",
            )
        )
    return out


def checked_placement(result: PlacementResult) -> PlacementResult:
    """Candidates whose every number is possible; the others move to ``rejected``, saying why."""
    kept = []
    rejected = dict(result.rejected)
    for candidate in result.candidates:
        problem = _first_problem(
            ("marginal_it_w", candidate.marginal_it_w, b.symmetric(b.NODE_POWER_W)),
            ("marginal_cooling_w", candidate.marginal_cooling_w, b.symmetric(b.NODE_POWER_W)),
            ("thermal_headroom_c", candidate.thermal_headroom_c, b.TEMP_DIFFERENCE_C),
            ("rack_headroom_w", candidate.rack_headroom_w, b.symmetric(b.FACILITY_POWER_W)),
        )
        if problem is None:
            kept.append(candidate)
        else:
            rejected[candidate.host] = f"{REFUSED}: {problem}"
    if len(kept) == len(result.candidates):
        return result
    return PlacementResult(tuple(kept), rejected)


def _limit_bounds(rec: CapRecommendation) -> b.Range:
    low, high = b.GPU_POWER_W
    if b.within(rec.min_limit_w, b.GPU_POWER_W):
        low = rec.min_limit_w
    if b.within(rec.max_limit_w, b.GPU_POWER_W):
        high = rec.max_limit_w
    return (low, high)


def _first_problem(*checks: tuple[str, float | None, b.Range]) -> str | None:
    """What is wrong with the first number outside its bounds; None (unknown) passes."""
    for name, value, bounds in checks:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if not b.within(value, bounds):
            return (
                f"{name} of {value:.4g} is outside physical bounds ({bounds[0]:g} to {bounds[1]:g})"
            )
    return None
