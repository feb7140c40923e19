"""What each node draws at its power supplies besides its GPUs, and what a GPU watt costs there.

A budget is a limit on node power as the BMC reads it (at the power supplies), while caps
act on GPU power as NVML reads it. Per bucket of the recent window, node power is
``other_n + slope·(its GPUs' power)``: ``slope`` carries the power supplies' loss on each
GPU watt (and whatever else moves with the GPUs' power, such as data-loader CPUs), fitted
across the fleet within each node (each node's own level removed, so that nodes that
differ do not pass for a slope). A node's other power is then its residual
``node − slope·GPUs`` at a high quantile of the window: what it may draw besides its GPUs.

Where the GPUs' power barely moved, the slope cannot be told from noise and
:data:`DEFAULT_SLOPE` stands in: a power supply of 92 % efficiency (80 PLUS Gold at half
load), at the costly end of what data-center supplies do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import column, tag
from wattwise.optimizer.telemetry import Floats, Series

DEFAULT_SLOPE = 1.0 / 0.92
SLOPE_RANGE = (1.0, 1.3)
"""A GPU watt costs at least a watt at the supplies, and no supply loses 23 %."""
MIN_SPREAD_W = 200.0
"""The GPUs' power must move by this much (standard deviation within nodes) for a slope."""
MIN_POINTS = 20


@dataclass(frozen=True)
class NodeOther:
    """Per node: other power at the supplies (high quantile); fleet-wide GPU-watt cost."""

    other_w: dict[str, float]
    """Host → its power besides its GPUs (NaN-free; hosts without node power are absent)."""
    slope: float
    fitted: bool
    """Whether ``slope`` came from the data (else :data:`DEFAULT_SLOPE`)."""


def fit_node_other(gpus: Series, hosts: Series, *, quantile: float = 0.99) -> NodeOther:
    """From ``gpu`` and ``host`` series of the same buckets."""
    node_w = column(hosts, "node_power_w")
    keep = np.isfinite(node_w)
    if not keep.any():
        return NodeOther({}, DEFAULT_SLOPE, fitted=False)
    names = np.concatenate([tag(gpus, "host"), tag(hosts, "host")[keep]]).astype(str)
    host_names, host_codes = np.unique(names, return_inverse=True)
    times = np.concatenate([gpus.time_ns, hosts.time_ns[keep]])
    time_values, time_codes = np.unique(times, return_inverse=True)
    keys = host_codes * len(time_values) + time_codes
    gpu_keys, node_keys = keys[: len(gpus)], keys[len(gpus) :]
    power = np.nan_to_num(column(gpus, "power_w"), nan=0.0)
    size = len(host_names) * len(time_values)
    gpu_sum = np.bincount(gpu_keys, weights=power, minlength=size)[node_keys]
    node = node_w[keep]
    node_host = host_codes[len(gpus) :]
    slope, fitted = _slope(node_host, gpu_sum, node, len(host_names))
    residual = node - slope * gpu_sum
    other: dict[str, float] = {}
    order = np.argsort(node_host, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(node_host[order]) != 0, True])
    for start, end in itertools.pairwise(bounds.tolist()):
        rows = order[start:end]
        other[str(host_names[node_host[rows[0]]])] = float(np.quantile(residual[rows], quantile))
    return NodeOther(other, slope, fitted)


def _slope(host: np.ndarray, gpu_w: Floats, node_w: Floats, hosts: int) -> tuple[float, bool]:
    """Within-node least squares of node power on GPU power, pooled over nodes."""
    count = np.maximum(np.bincount(host, minlength=hosts), 1)
    x = gpu_w - (np.bincount(host, weights=gpu_w, minlength=hosts) / count)[host]
    y = node_w - (np.bincount(host, weights=node_w, minlength=hosts) / count)[host]
    spread = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    if x.size < MIN_POINTS or spread < MIN_SPREAD_W:
        return DEFAULT_SLOPE, False
    slope = float(np.dot(x, y) / np.dot(x, x))
    return float(np.clip(slope, *SLOPE_RANGE)), True
