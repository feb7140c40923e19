"""Where to place the next job: nodes with enough free GPUs, ranked by the marginal power the
new load adds (IT power from each node's ``P(u)`` curve, plus the cooling power to remove
it), within every rack's power budget, every zone's cooling capacity and the thermal limits.

All nodes are scored at once on the arrays of a :class:`.fleet_view.FleetView` and a
:class:`.placement_basis.PlacementBasis`, both built once per refresh; only the handful
of winners become Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.optimizer.models.workload import WorkloadProfile
from wattwise.optimizer.recommend import health
from wattwise.optimizer.recommend.fleet_view import PSU_EFFICIENCY, FleetView
from wattwise.optimizer.recommend.placement_basis import PlacementBasis, placement_basis
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.recommend.types import PlacementCandidate, PlacementResult
from wattwise.optimizer.telemetry import Floats

DEFAULT_DUTY = 1.0
"""A job of unknown kind is assumed to keep its GPUs fully busy."""


class PlacementRequest(BaseModel):
    """A job asking for GPUs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpus: int = Field(ge=1, description="GPUs on one node")
    gpu_model: str | None = Field(None, description="substring of the GPU product name")
    min_mem_bytes: float | None = Field(None, gt=0, description="memory each GPU must have")
    expected_power_w: float | None = Field(None, gt=0, description="power per GPU")
    workload_class: str | None = Field(None, description="a class label with a profile")
    job: str | None = Field(None, description="a job id with a profile (a rerun)")
    duration_s: float | None = Field(None, gt=0)
    zone: str | None = None
    rack: str | None = None
    exclude_hosts: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_profile(self) -> PlacementRequest:
        if self.workload_class is not None and self.job is not None:
            raise ValueError("name a workload_class or a job, not both")
        return self


def recommend_placement(
    request: PlacementRequest,
    view: FleetView,
    settings: PlacementSettings,
    profiles: Mapping[str, WorkloadProfile] | None = None,
    *,
    explain: bool = True,
) -> PlacementResult:
    """Ranked candidates (best first) and, with ``explain``, why each other node cannot
    take the job (naming a thousand nodes costs more than ranking them)."""
    basis = placement_basis(view, settings)
    duty, job_w, source = _job_load(request, basis, profiles or {})
    # No GPU draws more than its own maximum limit, whatever the job drew elsewhere.
    node_job_w = np.minimum(job_w, basis.node_max_limit_w)
    eligible = _eligible_slots(request, basis)
    # A matrix-vector product sums the few slots of every node far faster than a reduction
    # along the short axis.
    free = eligible.astype(np.float64) @ np.ones(basis.width)
    added_util = request.gpus * duty / np.maximum(view.node_gpus, 1.0)
    marginal_it = _marginal_it_w(view, basis, eligible, free, added_util, request.gpus, node_job_w)
    need_w = np.maximum(marginal_it, request.gpus * node_job_w / PSU_EFFICIENCY * duty)
    cooling_w = marginal_it / basis.node_cop
    rack_headroom = basis.node_rack_spare_w - need_w
    zone_headroom = basis.node_zone_spare_w - need_w
    inlet = view.node_inlet_c + basis.node_recirculation_c_per_kw * need_w / 1e3
    slot_headroom = _slot_headroom_c(basis, eligible, inlet, job_w)
    gpu_headroom = _kth_coolest(slot_headroom, request.gpus)
    checks = [
        (free >= request.gpus, f"fewer than {request.gpus} free GPUs that fit the request"),
        (_placed_allowed(request, basis, view), "outside the requested zone or rack, or excluded"),
        (rack_headroom >= 0, "the rack's power budget would be exceeded"),
        (zone_headroom >= 0, "the zone's cooling capacity would be exceeded"),
        (settings.max_inlet_c - inlet >= 0, f"inlet would pass {settings.max_inlet_c:g} °C"),
        (gpu_headroom >= settings.gpu_temp_margin_c, "GPUs would come too close to slowdown"),
    ]
    ok = np.logical_and.reduce([passed for passed, _ in checks])
    score = marginal_it + cooling_w
    fit = np.flatnonzero(ok)
    best = fit[np.lexsort((-gpu_headroom[fit], score[fit]))][: settings.max_candidates]
    scored = _Scored(eligible, slot_headroom, marginal_it, cooling_w, gpu_headroom, rack_headroom)
    candidates = _candidates(view, basis, best, scored, request.gpus, source)
    if not explain:
        return PlacementResult(candidates)
    rejected = health.annotated(_rejections(view, checks), basis.node_health_notes)
    return PlacementResult(candidates, rejected)


def _rejections(view: FleetView, checks: list[tuple[np.ndarray, str]]) -> dict[str, str]:
    """Host → the first check it failed, for every node that failed one."""
    ok = np.ones(len(view.node_host), dtype=np.bool_)
    why = np.full(len(view.node_host), "", dtype=object)
    for passed, reason in checks:
        why[ok & ~passed] = reason
        ok &= passed
    return {str(view.node_host[n]): str(why[n]) for n in np.flatnonzero(~ok)}


def _job_load(
    request: PlacementRequest, basis: PlacementBasis, profiles: Mapping[str, WorkloadProfile]
) -> tuple[float, float, str]:
    """(duty, power per GPU while placed, where they come from); the power is ``inf`` when
    nothing says, which each GPU's maximum limit then bounds."""
    name = request.workload_class or request.job
    profile = profiles.get(name) if name is not None else None
    duty = profile.duty if profile is not None and np.isfinite(profile.duty) else DEFAULT_DUTY
    if request.expected_power_w is not None:
        return duty, request.expected_power_w, "the stated power"
    if profile is not None and np.isfinite(profile.mean_power_w):
        return duty, profile.mean_power_w, f"the profile of {profile.kind} {profile.name}"
    return duty, math.inf, "the GPUs' maximum limit (no power given)"


def _eligible_slots(request: PlacementRequest, basis: PlacementBasis) -> np.ndarray:
    """Per node slot: a free GPU that matches the request's model and memory."""
    ok = basis.slot_free
    if request.gpu_model is not None:
        ok = ok & basis.models_matching(request.gpu_model)
    if request.min_mem_bytes is not None:
        ok = ok & (basis.slot_mem_total_bytes >= request.min_mem_bytes)
    return ok


def _marginal_it_w(
    view: FleetView,
    basis: PlacementBasis,
    eligible: np.ndarray,
    free: np.ndarray,
    added_util: Floats,
    gpus: int,
    node_job_w: Floats,
) -> Floats:
    """From each node's curve where it has one, else the free GPUs' rise from their present
    power to the job's, through the PSU; plus, for a powered-down node, waking it."""
    if not basis.node_has_curve.all():
        idle_w = (np.where(eligible, basis.slot_power_w, 0.0) @ np.ones(basis.width)) / np.maximum(
            free, 1
        )
        fallback = gpus * np.maximum(node_job_w - idle_w, 0.0) / PSU_EFFICIENCY
    else:
        fallback = np.zeros(len(free))
    if view.curves is None:
        return np.asarray(fallback + view.node_wake_w)
    after = np.clip(view.node_util + added_util, 0.0, 1.0)
    curve = view.curves.power_w(basis.node_curve_row, after) - basis.node_curve_now_w
    return np.asarray(
        np.where(basis.node_has_curve, np.maximum(curve, 0.0), fallback) + view.node_wake_w
    )


def _slot_headroom_c(
    basis: PlacementBasis, eligible: np.ndarray, inlet_c: Floats, job_w: float
) -> Floats:
    """Slowdown temperature minus predicted temperature per slot; -inf where the slot's GPU
    cannot take the job, NaN where its temperature cannot be predicted (both fail every
    comparison and sort as the hottest)."""
    slot_job_w = np.minimum(job_w, basis.slot_max_limit_w)
    headroom = basis.slot_limit_c - basis.slot_r_th_c_per_w * slot_job_w - inlet_c[:, None]
    return np.where(eligible, headroom, -np.inf)


def _kth_coolest(slot_headroom: Floats, gpus: int) -> Floats:
    """Per node, the headroom of the worst of the ``gpus`` GPUs it would give (its
    coolest ones); -inf or NaN where it has fewer."""
    nodes, width = slot_headroom.shape
    if gpus > width:
        return np.full(nodes, -np.inf)
    # Partition sorts NaN after +inf: an unpredictable GPU counts as the hottest.
    return np.asarray(-np.partition(-slot_headroom, gpus - 1, axis=1)[:, gpus - 1])


def _placed_allowed(
    request: PlacementRequest, basis: PlacementBasis, view: FleetView
) -> np.ndarray:
    ok = np.ones(len(view.node_host), dtype=np.bool_)
    if request.zone is not None:
        ok &= view.node_zone_index == basis.zone_of_name.get(request.zone, -1)
    if request.rack is not None:
        ok &= view.node_rack_index == basis.rack_of_name.get(request.rack, -1)
    if request.exclude_hosts:
        named = basis.node_of_host
        ok[[named[h] for h in request.exclude_hosts if h in named]] = False
    return ok


class _Scored(NamedTuple):
    eligible: np.ndarray
    slot_headroom_c: Floats
    marginal_it_w: Floats
    cooling_w: Floats
    gpu_headroom_c: Floats
    rack_headroom_w: Floats


def _candidates(
    view: FleetView,
    basis: PlacementBasis,
    best: np.ndarray,
    scored: _Scored,
    gpus: int,
    source: str,
) -> tuple[PlacementCandidate, ...]:
    """The winners as objects; their numbers are gathered once and turned into Python floats
    before formatting (formatting NumPy scalars one by one cost more than the ranking)."""
    # Each winner's coolest free GPUs: free slots first (NaN sorts last), hottest last.
    key = np.where(scored.eligible[best], -scored.slot_headroom_c[best], np.nan)
    coolest = np.argsort(key, axis=1, kind="stable")[:, :gpus]
    gpu_rows = basis.slot_gpu[best[:, None], coolest]
    chosen = np.sort(view.gpu_index[gpu_rows], axis=1).tolist()
    rack_headroom = scored.rack_headroom_w[best]
    columns = zip(
        best.tolist(),
        chosen,
        scored.marginal_it_w[best].tolist(),
        scored.cooling_w[best].tolist(),
        scored.gpu_headroom_c[best].tolist(),
        np.where(np.isfinite(rack_headroom), rack_headroom, np.nan).tolist(),
        strict=True,
    )
    return tuple(
        PlacementCandidate(
            host=str(view.node_host[n]),
            gpus=tuple(gpu_list),
            zone=str(view.node_zone[n]),
            rack=str(view.node_rack[n]),
            marginal_it_w=it_w,
            marginal_cooling_w=cooling_w,
            thermal_headroom_c=headroom_c,
            rack_headroom_w=None if math.isnan(rack_w) else rack_w,
            reason=_reason(view, basis, n, (it_w, cooling_w, headroom_c), source),
        )
        for n, gpu_list, it_w, cooling_w, headroom_c, rack_w in columns
    )


def _reason(
    view: FleetView,
    basis: PlacementBasis,
    n: int,
    numbers: tuple[float, float, float],
    source: str,
) -> str:
    it_w, cooling_w, headroom_c = numbers
    how_it = "node power curve" if basis.node_has_curve[n] else "GPU power over idle, no node curve"
    load_pct = 100 * float(view.node_util[n])
    return (
        _wake_note(view, n) + f"+{it_w:.0f} W IT ({how_it} at {load_pct:.0f} % load)"
        f" + {cooling_w:.0f} W cooling (COP {float(basis.node_cop[n]):.1f}); "
        f"{headroom_c:.1f} °C below slowdown; job power from {source}"
    )


def _wake_note(view: FleetView, n: int) -> str:
    if not view.node_asleep[n]:
        return ""
    return (
        f"wakes this powered-down node (+{view.node_wake_w[n]:.0f} W to run it at all; "
        "the job waits for it to boot): "
    )
