"""The optimizer's own measurements as line protocol: ``recommendation`` and ``model``.

Written to the telemetry store so Grafana shows what was recommended and how
good each model is. Values that are not finite (a zone without inlet sensors)
are left out, never written as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from wattwise.collector.base import Reading
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.recommend.budget_types import BudgetPlan
from wattwise.optimizer.recommend.types import CapRecommendation, CoolingRecommendation

Location = tuple[str, str, str]
"""(cluster, zone, rack) of a host."""


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def cap_readings(
    caps: Sequence[CapRecommendation], where: Mapping[str, Location], time_ns: int
) -> list[Reading]:
    out = []
    for rec in caps:
        cluster, zone, rack = where.get(rec.host, ("", "", ""))
        tags = {
            "kind": "power_cap",
            "cluster": cluster,
            "zone": zone,
            "rack": rack,
            "host": rec.host,
            "gpu": str(rec.gpu),
            "objective": "slowdown_bound" if rec.objective.startswith("least") else "cost",
        }
        fields = {
            "current_limit_w": _finite(rec.current_limit_w),
            "recommended_limit_w": _finite(rec.recommended_limit_w),
            "saving_w": _finite(rec.saving_w),
            "saving_pct": _finite(rec.saving_pct),
            "saving_wh_per_job_hour": _finite(rec.saving_wh_per_job_hour),
            "slowdown_pct": _finite(rec.slowdown_pct),
            "slowdown_worst_pct": _finite(rec.slowdown_worst_pct),
            "confidence": _finite(rec.confidence),
            "samples": rec.evidence.samples,
        }
        out.append(Reading("recommendation", _present(tags), fields, time_ns))
    return out


def cooling_readings(cooling: Sequence[CoolingRecommendation], time_ns: int) -> list[Reading]:
    out = []
    for rec in cooling:
        tags = {"kind": "cooling", "cluster": rec.cluster, "zone": rec.zone}
        fields = {
            "current_setpoint_c": _finite(rec.current_setpoint_c),
            "recommended_setpoint_c": _finite(rec.recommended_setpoint_c),
            "predicted_max_inlet_c": _finite(rec.predicted_max_inlet_c),
            "predicted_max_gpu_temp_c": _finite(rec.predicted_max_gpu_temp_c),
            "saving_w": _finite(rec.saving_w),
            "saving_pct": _finite(rec.saving_pct),
        }
        out.append(Reading("recommendation", _present(tags), fields, time_ns))
    return out


def budget_readings(plans: Sequence[BudgetPlan], time_ns: int) -> list[Reading]:
    """One point per power-budget plan, tagged by its scope only (a handful of series: the
    site, its zones and racks); the plan's GPUs are counted, not tagged."""
    out = []
    for plan in plans:
        tags = {"kind": "power_budget", "scope": plan.scope}
        fields = {
            "limit_w": _finite(plan.limit_w),
            "predicted_peak_before_w": _finite(plan.predicted_peak_before_w),
            "predicted_peak_after_w": _finite(plan.predicted_peak_after_w),
            "guaranteed_max_w": _finite(plan.guaranteed_max_w),
            "work_lost_pct": _finite(plan.work_lost_pct),
            "capped_gpus": len(plan.caps),
            "gpus": plan.gpus,
            "applied_share": _finite(plan.applied_share),
            "planned": int(plan.planned),
            "feasible": int(plan.feasible),
        }
        out.append(Reading("recommendation", _present(tags), fields, time_ns))
    return out


def model_readings(infos: Sequence[ModelInfo], time_ns: int) -> list[Reading]:
    out = []
    for info in infos:
        mae = next((v for k, v in info.errors.items() if k.startswith("mae_")), None)
        fields = {
            "version": info.version,
            "error_pct": _finite(info.errors.get("mape_pct")),
            "mae": _finite(mae),
            "samples": info.samples,
            "train_start_ns": info.window_start_ns,
            "train_end_ns": info.window_end_ns,
        }
        tags = {"name": info.kind, "gpu_model": info.scope}
        out.append(Reading("model", _present(tags), fields, time_ns))
    return out


def encode(readings: Sequence[Reading]) -> list[bytes]:
    return encode_many(readings)


def _present(tags: Mapping[str, str]) -> dict[str, str]:
    # line protocol has no empty tag values: an unknown location is simply not tagged
    return {k: v for k, v in tags.items() if v}
