"""The fleet as placement sees it: flat arrays over GPUs, nodes, racks and zones, built once per
refresh so that each placement is a handful of vectorised operations.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.models.node_power import NodePowerCurves
from wattwise.optimizer.models.thermal import CoolingModel, GpuThermalModel, InletModel
from wattwise.optimizer.recommend import sleeping
from wattwise.optimizer.telemetry import Floats, GpuState, HostState, ZoneState

PRIOR_GPU_AIR_OFFSET_C = 10.0
PRIOR_R_TH_C_PER_W = 0.055
"""H100 heatsink and die resistance measured on the real H100 (docs/simulator.md)."""
PRIOR_RECIRCULATION_C_PER_KW = 0.04
PRIOR_COP_AT_20C = 4.0
PRIOR_COP_GAIN_PER_C = 0.035
PRIOR_SLOWDOWN_C = 87.0
"""H100 slowdown temperature, for GPUs that do not report theirs."""
PSU_EFFICIENCY = 0.94
"""Used when a node has no power curve: GPU watts become wall watts through the PSU."""


@dataclass(frozen=True)
class FleetView:
    """Arrays per GPU (``gpu_*``), node (``node_*``), rack (``rack_*``) and zone (``zone_*``)."""

    gpu_node: np.ndarray
    gpu_index: np.ndarray
    gpu_model: np.ndarray
    gpu_util_pct: Floats
    gpu_mem_share: Floats
    gpu_mem_total_bytes: Floats
    gpu_failed: np.ndarray
    gpu_has_job: np.ndarray
    gpu_health: np.ndarray
    """Why each GPU should get no new work ("" when healthy; see :mod:`.health`)."""
    gpu_temp_c: Floats
    gpu_power_w: Floats
    gpu_max_limit_w: Floats
    gpu_slowdown_c: Floats
    gpu_offset_c: Floats
    gpu_r_th_c_per_w: Floats
    node_host: np.ndarray
    node_zone: np.ndarray
    node_rack: np.ndarray
    node_gpus: Floats
    node_util: Floats
    node_inlet_c: Floats
    node_curve: np.ndarray
    """Row in the power curves, -1 where the node has none."""
    node_asleep: np.ndarray
    """Powered down by the site's power saving (see :mod:`.sleeping`)."""
    node_wake_w: Floats
    """IT power waking the node adds before any job load (0 where it is awake)."""
    rack_names: np.ndarray
    node_rack_index: np.ndarray
    rack_power_w: Floats
    rack_recirculation_c_per_kw: Floats
    zone_names: np.ndarray
    node_zone_index: np.ndarray
    zone_it_power_w: Floats
    zone_cop: Floats
    curves: NodePowerCurves | None
    basis: dict[str, str] = field(default_factory=dict)
    """What each prediction rests on: fitted model or prior, for the reasons."""
    derived: dict[object, object] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    """What recommenders work out from the view once and reuse until the next refresh
    (see :func:`.placement_basis.placement_basis`). Not an argument: a view made with
    ``dataclasses.replace`` starts empty rather than sharing what the old view derived."""

    @classmethod
    def build(
        cls,
        gpus: Sequence[GpuState],
        hosts: Sequence[HostState],
        zones: Sequence[ZoneState],
        *,
        curves: NodePowerCurves | None = None,
        gpu_thermal: Mapping[str, GpuThermalModel] | None = None,
        inlets: Mapping[str, InletModel] | None = None,
        cooling: Mapping[str, CoolingModel] | None = None,
        busy: Collection[tuple[str, int]] = (),
        unhealthy: Mapping[tuple[str, int], str] | None = None,
    ) -> FleetView:
        """``busy``: (host, GPU) pairs a scheduler or ``gpu_job`` says hold a job;
        ``unhealthy``: (host, GPU) → why it should get no new work (:mod:`.health`)."""
        thermal = dict(gpu_thermal or {})
        host_of = {h.host: h for h in hosts}
        node_host = np.array(sorted({g.host for g in gpus}), dtype=object)
        node_of = {h: i for i, h in enumerate(node_host)}
        g_node = np.array([node_of[g.host] for g in gpus], dtype=np.int64)
        n = len(node_host)
        first: dict[str, GpuState] = {}
        for g in gpus:
            first.setdefault(g.host, g)
        zone = np.asarray([first[h].zone for h in node_host], dtype=object)
        rack = np.asarray([first[h].rack for h in node_host], dtype=object)
        rack_names, rack_index = np.unique(rack.astype(str), return_inverse=True)
        zone_names, zone_index = np.unique(zone.astype(str), return_inverse=True)
        gpu_power = np.array([g.power_w for g in gpus])
        node_gpu_w = np.bincount(g_node, weights=np.nan_to_num(gpu_power), minlength=n)
        node_power = np.array(
            [_node_power(host_of.get(h), node_gpu_w[i]) for i, h in enumerate(node_host)]
        )
        newest_ns = np.full(n, np.iinfo(np.int64).min)
        np.maximum.at(newest_ns, g_node, np.array([g.time_ns for g in gpus], dtype=np.int64))
        asleep = sleeping.asleep_nodes(node_host, host_of, newest_ns.tolist())
        # A powered-down node's GPUs were all idle before it slept: free, whatever is stale.
        util = np.where(asleep[g_node], 0.0, np.array([g.util_gpu_pct for g in gpus]))
        counts = np.bincount(g_node, minlength=n).astype(np.float64)
        node_util = np.asarray(
            np.bincount(g_node, weights=np.nan_to_num(util), minlength=n)
            / np.maximum(counts, 1)
            / 100.0,
            dtype=np.float64,
        )
        models = np.array([g.model for g in gpus], dtype=object)
        offset, r_th = _gpu_thermal(models, thermal)
        curve_index = curves.index() if curves is not None else {}
        node_curve = sleeping.borrow_curves(
            np.array([curve_index.get(str(h), -1) for h in node_host], dtype=np.int64),
            asleep,
            [(str(first[h].model), float(counts[i])) for i, h in enumerate(node_host)],
            curves,
        )
        idle_w = sleeping.awake_idle_w(node_power, node_util, asleep, counts)
        mem_share = np.array([_share(g.mem_used_bytes, g.mem_total_bytes) for g in gpus])
        busy_set = set(busy)
        return cls(
            gpu_node=g_node,
            gpu_index=np.array([g.gpu for g in gpus], dtype=np.int64),
            gpu_model=models,
            gpu_util_pct=util,
            gpu_mem_share=np.where(asleep[g_node], 0.0, mem_share),
            gpu_mem_total_bytes=np.array([g.mem_total_bytes for g in gpus]),
            gpu_failed=np.array([g.failed for g in gpus], dtype=np.bool_),
            gpu_has_job=np.array([(g.host, g.gpu) in busy_set for g in gpus], dtype=np.bool_),
            gpu_health=np.array(
                [(unhealthy or {}).get((g.host, g.gpu), "") for g in gpus], dtype=object
            ),
            gpu_temp_c=np.array([g.temp_c for g in gpus]),
            gpu_power_w=gpu_power,
            gpu_max_limit_w=np.array([g.max_limit_w for g in gpus]),
            gpu_slowdown_c=np.nan_to_num(
                np.array([g.slowdown_temp_c for g in gpus]), nan=PRIOR_SLOWDOWN_C
            ),
            gpu_offset_c=offset,
            gpu_r_th_c_per_w=r_th,
            node_host=node_host,
            node_zone=zone,
            node_rack=rack,
            node_gpus=counts,
            node_util=node_util,
            node_inlet_c=_inlets(node_host, host_of, g_node, gpus, offset, r_th),
            node_curve=node_curve,
            node_asleep=asleep,
            node_wake_w=sleeping.wake_w(asleep, node_curve, curves, node_power, idle_w),
            rack_names=rack_names.astype(object),
            node_rack_index=np.asarray(rack_index, dtype=np.int64),
            rack_power_w=np.bincount(
                rack_index, weights=node_power, minlength=len(rack_names)
            ).astype(np.float64),
            rack_recirculation_c_per_kw=_recirculation(rack_names, node_host, rack, zone, inlets),
            zone_names=zone_names.astype(object),
            node_zone_index=np.asarray(zone_index, dtype=np.int64),
            zone_it_power_w=_zone_it(zone_names, zones, node_power, zone_index),
            zone_cop=_zone_cop(zone_names, zones, cooling),
            curves=curves,
            basis=_basis(curves, thermal, inlets, cooling),
        )


def _share(used: float, total: float) -> float:
    return used / total if math.isfinite(used) and math.isfinite(total) and total > 0 else 0.0


def _node_power(host: HostState | None, gpu_w: float) -> float:
    if host is not None and math.isfinite(host.node_power_w):
        return host.node_power_w
    return gpu_w / PSU_EFFICIENCY


def _inlets(
    node_host: np.ndarray,
    host_of: dict[str, HostState],
    g_node: np.ndarray,
    gpus: Sequence[GpuState],
    offset: Floats,
    r_th: Floats,
) -> Floats:
    """The BMC's inlet; where a node has none, what its GPUs' temperatures imply (warmest)."""
    implied = np.array([g.temp_c - g.power_w * r for g, r in zip(gpus, r_th, strict=True)]) - offset
    worst = np.full(len(node_host), -np.inf)
    np.maximum.at(worst, g_node, np.nan_to_num(implied, nan=-np.inf))
    bmc = np.array([h.inlet_temp_c if (h := host_of.get(str(n))) else np.nan for n in node_host])
    return np.where(np.isfinite(bmc), bmc, np.where(np.isfinite(worst), worst, np.nan))


def _gpu_thermal(models: np.ndarray, fits: dict[str, GpuThermalModel]) -> tuple[Floats, Floats]:
    offset = np.full(models.shape[0], PRIOR_GPU_AIR_OFFSET_C)
    r_th = np.full(models.shape[0], PRIOR_R_TH_C_PER_W)
    for name, fit in fits.items():
        mine = models == name
        offset[mine], r_th[mine] = fit.offset_c, fit.r_th_c_per_w
    return offset, r_th


def _recirculation(
    rack_names: np.ndarray,
    node_host: np.ndarray,
    rack_of_node: np.ndarray,
    zone_of_node: np.ndarray,
    inlets: Mapping[str, InletModel] | None,
) -> Floats:
    """Each rack's fitted slope (row-end racks recirculate more than mid-row ones), its
    zone's where the fit has no slope for it, the prior where the zone has no fit."""
    out = np.full(len(rack_names), PRIOR_RECIRCULATION_C_PER_KW)
    rack_index = {str(name): r for r, name in enumerate(rack_names)}
    per_host: dict[str, dict[str, float]] = {}
    for host, rack, zone in zip(node_host, rack_of_node, zone_of_node, strict=True):
        model = (inlets or {}).get(str(zone))
        if model is None:
            continue
        if str(zone) not in per_host:
            slopes = model.slopes_c_per_kw().tolist()
            per_host[str(zone)] = dict(zip(model.hosts, slopes, strict=True))
        slope = per_host[str(zone)].get(str(host), model.recirculation_c_per_kw)
        out[rack_index[str(rack)]] = max(slope, 0.0)
    return out


def _zone_it(
    names: np.ndarray, zones: Sequence[ZoneState], node_power: Floats, zone_index: np.ndarray
) -> Floats:
    from_nodes = np.bincount(zone_index, weights=node_power, minlength=len(names))
    measured = {z.zone: z.it_power_w for z in zones if math.isfinite(z.it_power_w)}
    return np.array([measured.get(str(n), from_nodes[i]) for i, n in enumerate(names)])


def _zone_cop(
    names: np.ndarray, zones: Sequence[ZoneState], cooling: Mapping[str, CoolingModel] | None
) -> Floats:
    state = {z.zone: z for z in zones}
    out = []
    for name in names.astype(str):
        z = state.get(name)
        supply = z.supply_temp_c if z is not None else math.nan
        supply = supply if math.isfinite(supply) else (z.setpoint_c if z is not None else 20.0)
        supply = supply if math.isfinite(supply) else 20.0
        model = (cooling or {}).get(name)
        if model is not None:
            out.append(model.cop(supply))
        elif z is not None and z.cooling_power_w > 0 and math.isfinite(z.it_power_w):
            out.append(z.it_power_w / z.cooling_power_w)
        else:
            out.append(PRIOR_COP_AT_20C * math.exp(PRIOR_COP_GAIN_PER_C * (supply - 20.0)))
    return np.array(out)


def _basis(
    curves: NodePowerCurves | None,
    thermal: dict[str, GpuThermalModel],
    inlets: Mapping[str, InletModel] | None,
    cooling: Mapping[str, CoolingModel] | None,
) -> dict[str, str]:
    def say(fitted: bool, prior: str) -> str:
        return "fitted" if fitted else f"prior ({prior})"

    return {
        "it": say(curves is not None, "GPU power through a 94 % PSU"),
        "gpu_temp": say(bool(thermal), "R_th 0.055 °C/W, +10 °C tray air"),
        "inlet": say(bool(inlets), "0.04 °C per rack kW"),
        "cooling": say(bool(cooling), "COP 4 at 20 °C, +3.5 %/°C"),
    }
