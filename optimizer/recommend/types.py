"""What the recommenders return: frozen dataclasses of plain values (JSON via ``as_dict``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields


def changes_limit(current_limit_w: float, recommended_limit_w: float | None) -> bool:
    """Whether a recommendation asks for a limit other than the one the GPU has now."""
    return recommended_limit_w is not None and recommended_limit_w != current_limit_w


@dataclass(frozen=True)
class Evidence:
    window_start_ns: int
    window_end_ns: int
    samples: int


@dataclass(frozen=True)
class CapRecommendation:
    """A power limit for one GPU, or the reason there is none (``recommended_limit_w`` None)."""

    host: str
    gpu: int
    model: str
    current_limit_w: float
    recommended_limit_w: float | None
    min_limit_w: float
    max_limit_w: float
    saving_w: float
    saving_pct: float
    """Energy per unit of work saved against the current limit, in %."""
    slowdown_pct: float
    """Expected, against the same work at the GPU's maximum limit."""
    objective: str
    confidence: float
    evidence: Evidence
    boundness: float | None
    """Estimated memory-boundness μ of the work (None when there is no estimate)."""
    reason: str
    slowdown_worst_pct: float = 0.0
    """The slowdown at the cautious end of what the work may be (μ and the clock curve): the
    slowdown bound holds on it."""
    saving_wh_per_job_hour: float = 0.0
    """Energy the GPU's job would save per hour of its work at today's pace (Wh), the node's
    other power included: the saving per job, not watts times hours."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class PlacementCandidate:
    host: str
    gpus: tuple[int, ...]
    zone: str
    rack: str
    marginal_it_w: float
    marginal_cooling_w: float
    thermal_headroom_c: float
    """Slowdown temperature minus the predicted temperature of the hottest chosen GPU."""
    rack_headroom_w: float | None
    """Rack budget left after the job (None where the rack has no budget)."""
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: an unknown (non-finite) number is None."""
        # One shallow pass over names looked up once: no field nests, and asdict's deep
        # copy, a per-call fields() and a recursive clean were a third of a placement
        # request's own cost.
        out: dict[str, object] = {}
        for name in _CANDIDATE_FIELDS:
            value = getattr(self, name)
            out[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        return out


_CANDIDATE_FIELDS = tuple(f.name for f in fields(PlacementCandidate))


@dataclass(frozen=True)
class PlacementResult:
    candidates: tuple[PlacementCandidate, ...]
    rejected: dict[str, str] = field(default_factory=dict)
    """Host → why it cannot take the job."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CoolingRecommendation:
    cluster: str
    zone: str
    current_setpoint_c: float
    recommended_setpoint_c: float
    predicted_max_inlet_c: float
    predicted_max_gpu_temp_c: float
    max_inlet_limit_c: float
    gpu_temp_limit_c: float
    saving_w: float
    saving_pct: float
    max_step_c: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
