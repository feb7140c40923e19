"""Settings of the recommenders: frozen pydantic models the caller passes in."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
