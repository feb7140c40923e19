"""What placement needs from a :class:`.fleet_view.FleetView` under one
:class:`.settings.PlacementSettings`, worked out once per refresh instead of on every request.

A placement request only differs in the job (GPUs, power, model, memory, where it may
go), so everything else is fixed between refreshes: which GPUs are free, each rack's
and zone's spare power, each node's present draw on its power curve, and the GPUs laid
out as a nodes × slots table so that "the coolest ``k`` free GPUs of each node" is a
partition along one axis rather than a sort of every GPU in the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.recommend import health
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.telemetry import Floats

CACHED_SETTINGS = 4
"""Bases kept per view, one per distinct budgets and free-GPU thresholds (copies of the
same settings that differ only in ``max_candidates``, as the extender makes, share one)."""


UNKNOWN_LIMIT_W = 700.0
"""An H100 SXM's maximum limit: a GPU's draw when no GPU in the fleet reports its limit."""


@dataclass(frozen=True)
class PlacementBasis:
    """Arrays per node (``(nodes,)``) and per node slot (``(nodes, width)``, GPU rows of
    each node in ascending order; a node with fewer GPUs than ``width`` is padded)."""

    slot_gpu: np.ndarray
    """GPU row in the view of each slot, -1 for padding."""
    slot_free: np.ndarray
    """Free by the settings' thresholds, not failed, healthy and not holding a job."""
    slot_model: np.ndarray
    """Index into :attr:`model_names`; ``len(model_names)`` for padding."""
    slot_power_w: Floats
    """Present power, 0 where unknown (the fallback's idle level)."""
    slot_mem_total_bytes: Floats
    """0 where unknown: no memory request is met by a GPU of unknown size."""
    slot_limit_c: Floats
    """Slowdown temperature minus the GPU's offset over its tray air: the air temperature
    plus power rise it can take (NaN for padding)."""
    slot_r_th_c_per_w: Floats
    slot_max_limit_w: Floats
    """The most the GPU can draw (its maximum power limit; the fleet's highest where it does
    not say, 0 for padding): no job draws more on it, whatever it drew elsewhere."""
    model_names: tuple[str, ...]
    node_rack_spare_w: Floats
    """Rack budget minus the rack's present draw (inf without a budget)."""
    node_zone_spare_w: Floats
    """Zone cooling capacity minus its present IT heat (inf without a capacity)."""
    node_recirculation_c_per_kw: Floats
    node_cop: Floats
    node_curve_row: np.ndarray
    """Row of each node in the view's power curves (0 where it has none)."""
    node_curve_now_w: Floats
    """The node's curve at its present load (as ``NodePowerCurves.power_w`` gives it)."""
    node_has_curve: np.ndarray
    node_max_limit_w: Floats
    """The highest :attr:`slot_max_limit_w` of each node."""
    node_health_notes: dict[str, str]
    """Host → its unhealthy GPUs in words (only hosts that have any)."""
    node_of_host: dict[str, int]
    zone_of_name: dict[str, int]
    rack_of_name: dict[str, int]

    @property
    def width(self) -> int:
        return int(self.slot_gpu.shape[1])

    def models_matching(self, substring: str) -> np.ndarray:
        """Per slot: the GPU's product name contains ``substring`` (padding never does)."""
        hits = [substring in name for name in self.model_names]
        return np.asarray(np.array([*hits, False], dtype=np.bool_)[self.slot_model])


def placement_basis(view: FleetView, settings: PlacementSettings) -> PlacementBasis:
    """The basis of ``view`` under ``settings``, built on first use and kept with the view."""
    key = (
        settings.free_util_pct,
        settings.free_mem_share,
        tuple(sorted(settings.rack_budgets_w.items())),
        tuple(sorted(settings.zone_cooling_capacity_w.items())),
    )
    cache = view.derived
    found = cache.get(key)
    if isinstance(found, PlacementBasis):
        return found
    basis = _build(view, settings)
    if len(cache) >= CACHED_SETTINGS:
        cache.clear()
    # One reference assignment: a concurrent reader sees the basis whole or builds its own.
    cache[key] = basis
    return basis


def _build(view: FleetView, settings: PlacementSettings) -> PlacementBasis:
    nodes = len(view.node_host)
    slot_gpu = _slots(view.gpu_node, nodes)
    pad = slot_gpu < 0
    row = np.where(pad, 0, slot_gpu)

    def per_slot(values: np.ndarray, fill: float) -> np.ndarray:
        if values.size == 0:
            return np.full(slot_gpu.shape, fill, dtype=values.dtype)
        return np.where(pad, fill, values[row])

    free = (
        ~view.gpu_failed
        & ~view.gpu_has_job
        & (view.gpu_health == "")
        & (np.nan_to_num(view.gpu_util_pct, nan=100.0) < settings.free_util_pct)
        & (view.gpu_mem_share <= settings.free_mem_share)
    )
    model_names, model_index = np.unique(view.gpu_model.astype(str), return_inverse=True)
    rack, zone = view.node_rack_index, view.node_zone_index
    budgets = np.array([settings.rack_budgets_w.get(str(r), np.inf) for r in view.rack_names])
    capacity = np.array(
        [settings.zone_cooling_capacity_w.get(str(z), np.inf) for z in view.zone_names]
    )
    rows, now, has = _curve_terms(view)
    known = np.isfinite(view.gpu_max_limit_w)
    top_w = float(np.max(view.gpu_max_limit_w[known])) if known.any() else UNKNOWN_LIMIT_W
    slot_max_limit_w = per_slot(np.where(known, view.gpu_max_limit_w, top_w), 0.0)
    return PlacementBasis(
        slot_gpu=slot_gpu,
        slot_free=per_slot(free, False),
        slot_model=per_slot(np.asarray(model_index, dtype=np.int64), len(model_names)),
        slot_power_w=per_slot(np.nan_to_num(view.gpu_power_w), 0.0),
        slot_mem_total_bytes=per_slot(np.nan_to_num(view.gpu_mem_total_bytes, nan=0.0), 0.0),
        slot_limit_c=per_slot(view.gpu_slowdown_c - view.gpu_offset_c, np.nan),
        slot_r_th_c_per_w=per_slot(view.gpu_r_th_c_per_w, np.nan),
        slot_max_limit_w=slot_max_limit_w,
        model_names=tuple(str(m) for m in model_names),
        node_rack_spare_w=budgets[rack] - view.rack_power_w[rack],
        node_zone_spare_w=capacity[zone] - view.zone_it_power_w[zone],
        node_recirculation_c_per_kw=view.rack_recirculation_c_per_kw[rack],
        node_cop=view.zone_cop[zone],
        node_curve_row=rows,
        node_curve_now_w=now,
        node_has_curve=has,
        node_max_limit_w=slot_max_limit_w.max(axis=1, initial=0.0),
        node_health_notes=health.node_notes(
            view.node_host, view.gpu_node, view.gpu_index, view.gpu_health
        ),
        node_of_host={str(h): i for i, h in enumerate(view.node_host)},
        zone_of_name={str(z): i for i, z in enumerate(view.zone_names)},
        rack_of_name={str(r): i for i, r in enumerate(view.rack_names)},
    )


def _slots(gpu_node: np.ndarray, nodes: int) -> np.ndarray:
    """GPU rows laid out per node, in ascending row order, padded with -1."""
    counts = np.bincount(gpu_node, minlength=nodes)
    width = int(counts.max()) if counts.size else 0
    order = np.argsort(gpu_node, kind="stable")
    first = np.concatenate(([0], np.cumsum(counts)[:-1])) if nodes else np.zeros(0, np.int64)
    position = np.arange(order.size) - first[gpu_node[order]]
    slots = np.full((nodes, width), -1, dtype=np.int64)
    slots[gpu_node[order], position] = order
    return slots


def _curve_terms(view: FleetView) -> tuple[np.ndarray, Floats, np.ndarray]:
    """Each node's row in the power curves, its draw at the present load, and whether it
    has a curve at all."""
    nodes = len(view.node_host)
    if view.curves is None:
        return np.zeros(nodes, dtype=np.int64), np.zeros(nodes), np.zeros(nodes, dtype=np.bool_)
    has = view.node_curve >= 0
    rows = np.where(has, view.node_curve, 0)
    return rows, view.curves.power_w(rows, view.node_util), has
