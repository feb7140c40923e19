"""Settings of the recommenders: frozen pydantic models the caller passes in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wattwise.common.plan_contract import APPLIER_INTERVAL_S


class CapSettings(BaseModel):
    """How power caps are chosen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Literal["least_energy", "cost"] = "least_energy"
    slowdown_bound: float = Field(0.05, ge=0, le=1, description="s: T(p) ≤ (1+s)·T(p_max)")
    eta: float = Field(0.5, ge=0, le=1, description="η of the cost η·E + (1−η)·P_max·T")
    step_w: float = Field(5.0, gt=0, description="granularity of candidate limits")
    gain_ratio: float = Field(
        1.0,
        ge=0,
        description="least energy saving (%) per 1 % of slowdown for a cap to be recommended "
        "(the node's other power running longer counted)",
    )
    min_confidence: float = Field(0.5, ge=0, le=1)
    min_samples: int = Field(5, ge=1, description="busy buckets needed for full confidence")
    max_variation: float = Field(
        0.25, gt=0, description="work whose clock-dependent power varies more is not one job"
    )


class PlacementSettings(BaseModel):
    """Budgets and thresholds placement must honour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rack_budgets_w: dict[str, float] = Field(
        default_factory=dict, description="rack → input power it may draw (W); absent = none"
    )
    zone_cooling_capacity_w: dict[str, float] = Field(
        default_factory=dict, description="zone → IT heat its cooling can remove (W)"
    )
    free_util_pct: float = Field(5.0, ge=0, le=100, description="a GPU below this is free")
    free_mem_share: float = Field(
        0.05, ge=0, le=1, description="a GPU with more of its memory in use holds a job"
    )
    gpu_temp_margin_c: float = Field(5.0, ge=0, description="kept below the slowdown temp")
    max_inlet_c: float = Field(27.0, description="ASHRAE recommended upper inlet")
    max_candidates: int = Field(10, ge=1)


class CoolingSettings(BaseModel):
    """Limits and step of cooling setpoint changes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_inlet_c: float = Field(27.0, description="ASHRAE recommended upper inlet")
    min_setpoint_c: float = Field(18.0)
    max_setpoint_c: float = Field(27.0)
    gpu_temp_margin_c: float = Field(5.0, ge=0, description="below each GPU's slowdown")
    max_step_c: float = Field(1.0, gt=0, description="largest change per recommendation")
    inlet_margin_c: float = Field(0.5, ge=0, description="kept below max_inlet_c")
    cop_gain_per_c: float = Field(0.035, ge=0, description="used when the fit has no spread")


PriorityClass = Literal["protected", "normal", "best_effort"]
PRIORITY_WEIGHTS: dict[str, float] = {"protected": 1e6, "normal": 1.0, "best_effort": 1e-3}
"""How much a unit of lost work weighs by class: a protected job gives up watts only when
every other job of the scope is at its minimum limit, a best-effort one before any normal
job does (six and three orders of magnitude are wider than any two jobs' losses differ)."""


class PriorityRule(BaseModel):
    """Jobs (by Slurm job id or pod, shell-style patterns) or hosts (a partition is a set of
    nodes) whose work is weighed as ``priority`` when a power budget takes watts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: PriorityClass
    jobs: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


class BudgetSettings(BaseModel):
    """Power limits at the power supplies (node power) of racks, zones (rows) and the site,
    and how a plan that holds them is made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rack_w: dict[str, float] = Field(
        default_factory=dict, description="rack → the power its nodes may draw (W)"
    )
    zone_w: dict[str, float] = Field(
        default_factory=dict, description="zone or row → the power its nodes may draw (W)"
    )
    site_w: float | None = Field(None, gt=0, description="the whole site's nodes (W)")
    step_w: float = Field(10.0, gt=0, description="granularity of planned limits")
    margin_share: float = Field(
        0.02, ge=0, lt=0.5, description="share of each limit kept free for what no model sees"
    )
    plan_above_share: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a scope is planned once its predicted peak reaches this share of its "
        "limit: below it, default limits stay",
    )
    hold: Literal["predicted", "always"] = Field(
        "predicted",
        description="predicted: caps hold the limit at the interval's predicted peak, the "
        "work on each GPU changing as often as it has; always: whatever work starts, every "
        "GPU counted at its cap (safe without any prediction, costs more work)",
    )
    peak_quantile: float = Field(
        0.99, gt=0.5, le=1, description="the predicted peak is this quantile of the interval"
    )
    priorities: tuple[PriorityRule, ...] = Field(
        default=(), description="first matching rule wins; unmatched work is normal"
    )
    events_file: Path | None = Field(
        None, description="where timed power events are kept across restarts"
    )
    event_lead_s: float = Field(
        90.0,
        ge=0,
        le=3600,
        description="an event's limit is planned this long before it starts, so that "
        "appliers polling every minute hold it from its start",
    )
    applier_interval_s: float = Field(
        APPLIER_INTERVAL_S,
        gt=0,
        le=3600,
        description="how often the appliers ask for the plan (their --interval-s): a plan "
        "is in force from when they take it until they take the next, so it must hold for "
        "the refresh interval plus this",
    )

    def horizon_s(self, refresh_interval_s: float) -> float:
        """How long a plan made now stays in force on the GPUs, at the latest."""
        return refresh_interval_s + self.applier_interval_s

    @field_validator("rack_w", "zone_w")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v > 0]
        if bad:
            raise ValueError(f"limits must be > 0 W ({', '.join(sorted(bad))})")
        return value

    def configured(self) -> dict[str, float]:
        """Scope → limit (W) as configured: ``site``, ``zone:<name>``, ``rack:<name>``."""
        out = {f"rack:{k}": v for k, v in self.rack_w.items()}
        out.update({f"zone:{k}": v for k, v in self.zone_w.items()})
        if self.site_w is not None:
            out["site"] = self.site_w
        return out
