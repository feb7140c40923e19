"""Nodes the site's power saving has powered down, as telemetry shows them, and what waking
one would cost.

A powered-down node has no OS, so its agent is silent; only its BMC still answers,
with the standby draw of the BMC and power supplies. The rule: a node is asleep when
the newest BMC power it reported is at most ``STANDBY_MAX_W`` **and** its OS has gone
quiet — its newest ``host`` sample has no OS fields, or its GPUs have sent nothing for
``SILENT_S`` before that sample. Power alone is a strong signal (an idle awake GPU node
draws several hundred watts: CPUs, memory, NICs and idle GPUs), and the second
condition keeps a BMC that misreads 0 W on a working node from looking like sleep.

Its GPUs are known from the last inventory its agent sent (model, count, memory) and
are free: a node is only powered down once all its GPUs have been idle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from wattwise.optimizer.models.node_power import STANDBY_MAX_W, NodePowerCurves
from wattwise.optimizer.telemetry import Floats, HostState

SILENT_S = 30.0
"""GPU samples (every second from a running agent) missing this long mean the agent is down."""
PRIOR_AWAKE_IDLE_W_PER_GPU = 165.0
"""An idle awake 8-GPU H100 node draws ≈ 1.3 kW (GPUs 8 × 77 W, CPUs 170 W, the rest
450 W, through a 94 % PSU): used only when no node's power curve or idle power is known."""


def asleep_nodes(
    node_host: np.ndarray,
    host_of: Mapping[str, HostState],
    newest_gpu_ns: Sequence[int],
) -> np.ndarray:
    """Per node (``node_host`` order): is it powered down? ``newest_gpu_ns``: per node, the
    time of its newest GPU sample."""
    out = np.zeros(len(node_host), dtype=np.bool_)
    for i, name in enumerate(node_host.tolist()):
        host = host_of.get(str(name))
        if host is None or not math.isfinite(host.node_power_w):
            continue
        os_quiet = not math.isfinite(host.cpu_util_pct)
        gpus_quiet = host.time_ns - newest_gpu_ns[i] > SILENT_S * 1e9
        out[i] = host.node_power_w <= STANDBY_MAX_W and (os_quiet or gpus_quiet)
    return out


def borrow_curves(
    node_curve: np.ndarray,
    asleep: np.ndarray,
    kind: Sequence[tuple[str, float]],
    curves: NodePowerCurves | None,
) -> np.ndarray:
    """``node_curve`` where every sleeping node without a curve of its own (it slept through
    the whole fit window) takes that of a node of the same GPU model and count — the one
    with the median idle level — since waking it costs what such a node draws awake."""
    if curves is None:
        return node_curve
    peers: dict[tuple[str, float], list[int]] = {}
    for m in np.flatnonzero((node_curve >= 0) & ~asleep).tolist():
        peers.setdefault(kind[m], []).append(int(node_curve[m]))
    typical: dict[tuple[str, float], int] = {}
    for key, rows in peers.items():
        idle = curves.power_w(np.array(rows), np.zeros(len(rows)))
        typical[key] = rows[int(np.argsort(idle, kind="stable")[len(rows) // 2])]
    out = node_curve.copy()
    for n in np.flatnonzero(asleep & (node_curve < 0)).tolist():
        out[n] = typical.get(kind[n], -1)
    return out


def awake_idle_w(
    node_power_w: Floats, node_util: Floats, asleep: np.ndarray, gpus: Floats
) -> Floats:
    """Per node, what it would draw awake and idle, for waking nodes that have no curve: the
    median of the awake nodes with idle GPUs, per GPU, else the prior."""
    idle = ~asleep & (node_util < 0.05) & np.isfinite(node_power_w) & (gpus > 0)
    per_gpu = (
        float(np.median(node_power_w[idle] / gpus[idle]))
        if idle.any()
        else PRIOR_AWAKE_IDLE_W_PER_GPU
    )
    return np.asarray(per_gpu * gpus, dtype=np.float64)


def wake_w(
    asleep: np.ndarray,
    node_curve: np.ndarray,
    curves: NodePowerCurves | None,
    node_power_w: Floats,
    idle_w: Floats,
) -> Floats:
    """Per node, the IT power waking it adds before any job load: its awake idle draw (its
    curve at no load, else ``idle_w``) over the standby it draws now; 0 for awake nodes."""
    awake_idle = idle_w.copy()
    if curves is not None:
        has = node_curve >= 0
        rows = np.where(has, node_curve, 0)
        at_zero = curves.power_w(rows, np.zeros(len(rows)))
        awake_idle = np.where(has, at_zero, awake_idle)
    standby = np.nan_to_num(node_power_w, nan=0.0)
    return np.asarray(np.where(asleep, np.maximum(awake_idle - standby, 0.0), 0.0))
