"""Where to place the next job: nodes with enough free GPUs, ranked by the marginal power the
new load adds (IT power from each node's ``P(u)`` curve, plus the cooling power to remove
it), within every rack's power budget, every zone's cooling capacity and the thermal limits.

All nodes are scored at once on the arrays of a :class:`.fleet_view.FleetView` built
once per refresh; only the handful of winners become Python objects.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.optimizer.models.workload import WorkloadProfile
from wattwise.optimizer.telemetry import Floats

from .fleet_view import PSU_EFFICIENCY, FleetView
from .settings import PlacementSettings
from .types import PlacementCandidate, PlacementResult

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
    duty, job_w, source = _job_load(request, view, profiles or {})
    eligible = _eligible_gpus(request, view, settings)
    free = np.bincount(view.gpu_node[eligible], minlength=len(view.node_host))
    added_util = request.gpus * duty / np.maximum(view.node_gpus, 1.0)
    marginal_it = _marginal_it_w(view, eligible, added_util, request.gpus, job_w)
    need_w = np.maximum(marginal_it, request.gpus * job_w / PSU_EFFICIENCY * duty)
    cooling_w = marginal_it / view.zone_cop[view.node_zone_index]
    rack = view.node_rack_index
    budgets = np.array([settings.rack_budgets_w.get(str(r), np.inf) for r in view.rack_names])
    rack_headroom = budgets[rack] - view.rack_power_w[rack] - need_w
    capacity = np.array(
        [settings.zone_cooling_capacity_w.get(str(z), np.inf) for z in view.zone_names]
    )
    zone = view.node_zone_index
    zone_headroom = capacity[zone] - view.zone_it_power_w[zone] - need_w
    inlet = view.node_inlet_c + view.rack_recirculation_c_per_kw[rack] * need_w / 1e3
    gpu_headroom_each, gpu_headroom = _gpu_headroom_c(view, eligible, inlet, job_w, request.gpus)
    checks = [
        (free >= request.gpus, f"fewer than {request.gpus} free GPUs that fit the request"),
        (_placed_allowed(request, view), "outside the requested zone or rack, or excluded"),
        (rack_headroom >= 0, "the rack's power budget would be exceeded"),
        (zone_headroom >= 0, "the zone's cooling capacity would be exceeded"),
        (settings.max_inlet_c - inlet >= 0, f"inlet would pass {settings.max_inlet_c:g} °C"),
        (gpu_headroom >= settings.gpu_temp_margin_c, "GPUs would come too close to slowdown"),
    ]
    ok = np.ones(len(view.node_host), dtype=np.bool_)
    why = np.full(len(view.node_host), "", dtype=object)
    for passed, reason in checks:
        why[ok & ~passed] = reason
        ok &= passed
    score = marginal_it + cooling_w
    order = np.lexsort((-gpu_headroom, score))
    best = order[ok[order]][: settings.max_candidates]
    candidates = tuple(
        _candidate(
            view,
            int(n),
            (eligible, gpu_headroom_each),
            request.gpus,
            (marginal_it, cooling_w, gpu_headroom, rack_headroom),
            source,
        )
        for n in best
    )
    if not explain:
        return PlacementResult(candidates)
    rejected = {str(view.node_host[n]): str(why[n]) for n in np.flatnonzero(~ok)}
    return PlacementResult(candidates, rejected)


def _job_load(
    request: PlacementRequest, view: FleetView, profiles: Mapping[str, WorkloadProfile]
) -> tuple[float, float, str]:
    """(duty, power per GPU while placed, where they come from)."""
    name = request.workload_class or request.job
    profile = profiles.get(name) if name is not None else None
    duty = profile.duty if profile is not None and np.isfinite(profile.duty) else DEFAULT_DUTY
    if request.expected_power_w is not None:
        return duty, request.expected_power_w, "the stated power"
    if profile is not None and np.isfinite(profile.mean_power_w):
        return duty, profile.mean_power_w, f"the profile of {profile.kind} {profile.name}"
    top = float(np.nanmax(view.gpu_max_limit_w)) if view.gpu_max_limit_w.size else 700.0
    return duty, top, "the GPUs' maximum limit (no power given)"


def _eligible_gpus(
    request: PlacementRequest, view: FleetView, settings: PlacementSettings
) -> np.ndarray:
    """Indices of GPUs that are free and match the request's model and memory."""
    ok = (
        ~view.gpu_failed
        & ~view.gpu_has_job
        & (np.nan_to_num(view.gpu_util_pct, nan=100.0) < settings.free_util_pct)
        & (view.gpu_mem_share <= settings.free_mem_share)
    )
    if request.gpu_model is not None:
        ok &= np.char.find(view.gpu_model.astype(str), request.gpu_model) >= 0
    if request.min_mem_bytes is not None:
        ok &= np.nan_to_num(view.gpu_mem_total_bytes, nan=0.0) >= request.min_mem_bytes
    return np.flatnonzero(ok)


def _marginal_it_w(
    view: FleetView, eligible: np.ndarray, added_util: Floats, gpus: int, job_w: float
) -> Floats:
    """From each node's curve where it has one, else the free GPUs' rise from their present
    power to the job's, through the PSU; plus, for a powered-down node, waking it."""
    nodes = len(view.node_host)
    node = view.gpu_node[eligible]
    count = np.bincount(node, minlength=nodes)
    power = np.nan_to_num(view.gpu_power_w[eligible])
    idle_w = np.bincount(node, weights=power, minlength=nodes) / np.maximum(count, 1)
    fallback = gpus * np.maximum(job_w - idle_w, 0.0) / PSU_EFFICIENCY
    if view.curves is None:
        return np.asarray(fallback + view.node_wake_w)
    has = view.node_curve >= 0
    rows = np.where(has, view.node_curve, 0)
    curve = view.curves.marginal_w(rows, view.node_util, added_util)
    return np.asarray(np.where(has, np.maximum(curve, 0.0), fallback) + view.node_wake_w)


def _gpu_headroom_c(
    view: FleetView, eligible: np.ndarray, inlet_c: Floats, job_w: float, gpus: int
) -> tuple[Floats, Floats]:
    """Slowdown temperature minus predicted temperature, per eligible GPU and per node; a
    node's is that of the worst of the ``gpus`` GPUs it would give (its coolest ones)."""
    node = view.gpu_node[eligible]
    rise = view.gpu_offset_c[eligible] + view.gpu_r_th_c_per_w[eligible] * job_w
    per_gpu = view.gpu_slowdown_c[eligible] - (inlet_c[node] + rise)
    per_gpu = np.nan_to_num(per_gpu, nan=-np.inf)
    order = np.lexsort((-per_gpu, node))
    sorted_node = node[order]
    first = np.searchsorted(sorted_node, sorted_node, side="left")
    rank = np.arange(order.size) - first
    pick = order[rank == gpus - 1]
    per_node = np.full(len(view.node_host), -np.inf)
    per_node[node[pick]] = per_gpu[pick]
    return per_gpu, per_node


def _placed_allowed(request: PlacementRequest, view: FleetView) -> np.ndarray:
    ok = np.ones(len(view.node_host), dtype=np.bool_)
    if request.zone is not None:
        ok &= view.node_zone == request.zone
    if request.rack is not None:
        ok &= view.node_rack == request.rack
    if request.exclude_hosts:
        ok &= ~np.isin(view.node_host.astype(str), list(request.exclude_hosts))
    return ok


def _candidate(
    view: FleetView,
    n: int,
    eligible_headroom: tuple[np.ndarray, Floats],
    gpus: int,
    per_node: tuple[Floats, Floats, Floats, Floats],
    source: str,
) -> PlacementCandidate:
    eligible, headroom_each = eligible_headroom
    marginal_it, cooling_w, gpu_headroom, rack_headroom = per_node
    here = view.gpu_node[eligible] == n
    mine, headroom = eligible[here], headroom_each[here]
    coolest = mine[np.argsort(-headroom, kind="stable")][:gpus]
    has_curve = view.curves is not None and view.node_curve[n] >= 0
    how_it = "node power curve" if has_curve else "GPU power over idle, no node curve"
    return PlacementCandidate(
        host=str(view.node_host[n]),
        gpus=tuple(sorted(int(i) for i in view.gpu_index[coolest])),
        zone=str(view.node_zone[n]),
        rack=str(view.node_rack[n]),
        marginal_it_w=float(marginal_it[n]),
        marginal_cooling_w=float(cooling_w[n]),
        thermal_headroom_c=float(gpu_headroom[n]),
        rack_headroom_w=float(rack_headroom[n]) if np.isfinite(rack_headroom[n]) else None,
        reason=(
            _wake_note(view, n)
            + f"+{marginal_it[n]:.0f} W IT ({how_it} at {100 * view.node_util[n]:.0f} % load)"
            f" + {cooling_w[n]:.0f} W cooling (COP {view.zone_cop[view.node_zone_index[n]]:.1f}); "
            f"{gpu_headroom[n]:.1f} °C below slowdown; job power from {source}"
        ),
    )


def _wake_note(view: FleetView, n: int) -> str:
    if not view.node_asleep[n]:
        return ""
    return (
        f"wakes this powered-down node (+{view.node_wake_w[n]:.0f} W to run it at all; "
        "the job waits for it to boot): "
    )
