"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wattwise.optimizer.recommend.budget_types import SCOPE_PATTERN
from wattwise.optimizer.recommend.placement import PlacementRequest
from wattwise.optimizer.service.power_events import MAX_REASON_CHARS


class PlacementBody(PlacementRequest):
    """A job to place: how many GPUs, of what, where it may go, and what it will draw.

    The recommender's own request with the bounds an API caller must keep, so one
    validation of the body gives the request ``recommend_placement`` takes."""

    gpus: int = Field(ge=1, le=64, description="GPUs the job needs (on one host)")
    gpu_model: str | None = Field(None, max_length=200, description="part of the GPU name")
    min_mem_bytes: float | None = Field(None, gt=0, le=1e13, description="memory per GPU")
    workload_class: str | None = Field(None, max_length=200, description="a profiled class")
    job: str | None = Field(None, max_length=200, description="a profiled job id (a rerun)")
    expected_power_w: float | None = Field(None, gt=0, le=5000, description="per GPU")
    duration_s: float | None = Field(None, gt=0, le=365 * 86400)
    zone: str | None = Field(None, max_length=200)
    rack: str | None = Field(None, max_length=200)
    exclude_hosts: tuple[str, ...] = Field((), max_length=100_000)


class PlacementCandidateOut(BaseModel):
    host: str
    gpus: list[int]
    zone: str
    rack: str
    marginal_it_w: float | None
    marginal_cooling_w: float | None
    thermal_headroom_c: float | None
    rack_headroom_w: float | None
    reason: str


class PlacementOut(BaseModel):
    candidates: list[PlacementCandidateOut]
    rejected: dict[str, str]
    nodelist: str = Field(
        description="the best candidate's host as a Slurm --nodelist value ('' when none)"
    )


class ItemsOut(BaseModel):
    """Recommendations of the latest refresh (items as in docs/api.md)."""

    computed_at: str
    count: int
    items: list[dict[str, object]]


class ModelOut(BaseModel):
    kind: str
    scope: str
    version: int
    window_start_ns: int
    window_end_ns: int
    samples: int
    errors: dict[str, float]
    notes: str


class ModelsOut(BaseModel):
    fitted_at: str
    models: list[ModelOut]
    dropped_values: dict[str, int] = Field(
        default_factory=dict,
        description="telemetry values dropped as physically impossible since start, "
        "by measurement.field",
    )


class RefreshOut(BaseModel):
    computed_at: str
    power_caps: int
    cooling: int
    power_budget: int = Field(description="power budgets planned (one per scope in force)")


class PowerEventBody(BaseModel):
    """A scope's power limit for a window: a demand-response event, a feed under maintenance."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(
        max_length=200,
        pattern=SCOPE_PATTERN.pattern,
        description="site, zone:<name> or rack:<name>",
    )
    limit_w: float = Field(
        gt=0, le=1e10, allow_inf_nan=False, description="what the scope's nodes may draw (W)"
    )
    start: AwareDatetime = Field(description="ISO 8601 with its offset, e.g. 2024-05-02T14:00Z")
    end: AwareDatetime = Field(description="after start and in the future")
    reason: str = Field("", max_length=MAX_REASON_CHARS)


class PowerEventOut(BaseModel):
    id: str
    scope: str
    limit_w: float
    start: str
    end: str
    reason: str
    state: str = Field(description="scheduled, active, ended or cancelled")
    created_at: str
    cancelled_at: str | None


class PowerEventsOut(BaseModel):
    count: int
    items: list[PowerEventOut]


class HealthOut(BaseModel):
    status: str
    ready: bool
    last_refresh: str | None
    last_refit: str | None


class ErrorOut(BaseModel):
    error: str
    detail: object
