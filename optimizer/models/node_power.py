"""Per-node power curve ``P(u) = K0 + K1·e^(K2·u)`` for placement.

``u`` is the node's mean GPU utilization (0..1) in a bucket and ``P`` its BMC
``node_power_w``. Placement scores a node by the marginal power of the new load,
``P(u + Δu) − P(u)``, so the shape matters as much as the level: a node whose
curve is convex costs more per unit of extra load when it is already busy.

``K2`` is picked from a grid; for each ``K2`` the curve is linear in ``K0, K1``
and solved in closed form for every node at once. Nodes whose utilization did not
vary enough to see a shape borrow ``K1, K2`` of their GPU model, fitted on how
the other nodes' power moved with their own load, and keep their own level ``K0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import (
    SLICE_ROWS,
    ModelInfo,
    codes_in,
    column,
    distinct_tag,
    error_summary,
    factorize,
    offsets_gcd,
    tag,
    tag_codes,
    window_of,
)
from wattwise.optimizer.telemetry import Floats, Ints, Series

SHAPE_GRID = np.array([k for k in np.linspace(-3.0, 3.0, 25) if k != 0.0])
"""Candidate ``K2``; 0 is left out (the curve would be flat), ±0.25 is near-linear."""
MIN_UTIL_SPREAD = 0.2
"""A node needs utilization over at least this range to fit its own shape."""
STANDBY_MAX_W = 200.0
"""Highest node power read as a powered-down node's standby draw (BMC and PSUs only)."""
VERSION = 1


@dataclass(frozen=True)
class NodePowerCurves:
    """``K0, K1, K2`` per host (arrays aligned with :attr:`hosts`)."""

    hosts: tuple[str, ...]
    k0_w: Floats
    k1_w: Floats
    k2: Floats
    own_shape: np.ndarray
    """True where the node's own data fixed ``K1, K2`` (else its GPU model's shape)."""
    info: ModelInfo

    def power_w(self, rows: np.ndarray, util: Floats) -> Floats:
        """Predicted node power of hosts ``rows`` (indices into :attr:`hosts`) at ``util``."""
        return np.asarray(self.k0_w[rows] + self.k1_w[rows] * np.exp(self.k2[rows] * util))

    def marginal_w(self, rows: np.ndarray, util_now: Floats, util_added: Floats) -> Floats:
        """Extra node power when utilization rises from ``util_now`` by ``util_added``."""
        after = np.clip(util_now + util_added, 0.0, 1.0)
        return self.power_w(rows, after) - self.power_w(rows, util_now)

    def index(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self.hosts)}


def node_utilization(gpus: Series, hosts: Series) -> Floats:
    """Mean GPU utilization (0..1) of each ``host_series`` row's node in the same bucket.

    Grouped on each GPU row's host code times the bucket count plus its bucket, built in
    place a slice at a time, and read at each host row's own code and bucket: on a day of
    10,000 GPUs a grouping on the host tag and the time stamps as two keys, then a join of
    the nodes' means to the host rows, held several row-sized arrays at once and set the
    refit's peak memory."""
    if len(gpus) == 0:
        return np.full(len(hosts), np.nan)
    names = distinct_tag(gpus, "host")
    first_ns = int(gpus.time_ns.min())
    step_ns = max(offsets_gcd(gpus.time_ns, first_ns), 1)
    buckets = (int(gpus.time_ns.max()) - first_ns) // step_ns + 1
    ids = tag_codes(gpus, ("host",))  # dense, in the order of the sorted names
    for begin in range(0, len(ids), SLICE_ROWS):
        part = ids[begin : begin + SLICE_ROWS]
        part *= buckets
        part += (gpus.time_ns[begin : begin + SLICE_ROWS] - first_ns) // step_ns
    size = len(names) * buckets
    util_pct = column(gpus, "util_gpu_pct")
    missing = np.flatnonzero(~np.isfinite(util_pct))
    count = np.bincount(ids, minlength=size) - np.bincount(ids[missing], minlength=size)
    if missing.size:  # a missing reading adds nothing (a copy only then)
        util_pct = np.where(np.isfinite(util_pct), util_pct, 0.0)
    total = np.bincount(ids, weights=util_pct, minlength=size) / 100.0
    del ids, util_pct
    # Each host row reads its node's bucket where its stamp is one of the GPUs' buckets.
    node = codes_in(tag(hosts, "host"), names)
    offsets = hosts.time_ns - first_ns
    bucket = offsets // step_ns
    found = (node >= 0) & (offsets % step_ns == 0) & (bucket >= 0) & (bucket < buckets)
    key = np.where(found, node * buckets + bucket, 0)
    found &= count[key] > 0
    return np.where(found, total[key] / np.maximum(count[key], 1), np.nan)


def fit_node_power_curves(gpus: Series, hosts: Series) -> NodePowerCurves:
    """Fit every node's curve from ``gpu_series`` (utilization) and ``host_series`` (power)."""
    util = node_utilization(gpus, hosts)
    power = column(hosts, "node_power_w")
    host = tag(hosts, "host")
    every_node, _ = factorize(host)
    ok = np.isfinite(util) & np.isfinite(power) & ~_around_standby(every_node, hosts.time_ns, power)
    # Only nodes with usable buckets get a curve: one asleep all window has none to fit.
    node, names = factorize(host[ok])
    u, p = util[ok], power[ok]
    nodes = len(names)
    k0, k1, k2 = _best_shape(node, u, p, nodes)
    count = np.bincount(node, minlength=nodes)
    span = _spread(node, u, nodes)
    own = (span >= MIN_UTIL_SPREAD) & (count >= 3)
    if (~own).any():
        pooled_k1, pooled_k2 = _pooled_shape(node, u, p, nodes, _model_of(gpus, names))
        mean_u = np.bincount(node, weights=u, minlength=nodes) / np.maximum(count, 1)
        mean_p = np.bincount(node, weights=p, minlength=nodes) / np.maximum(count, 1)
        k1 = np.where(own, k1, pooled_k1)
        k2 = np.where(own, k2, pooled_k2)
        k0 = np.where(own, k0, mean_p - pooled_k1 * np.exp(pooled_k2 * mean_u))
    predicted = k0[node] + k1[node] * np.exp(k2[node] * u)
    start, end = window_of(hosts, ok)
    info = ModelInfo(
        "node_power",
        "fleet",
        VERSION,
        start,
        end,
        int(ok.sum()),
        error_summary(p, predicted, "w"),
        f"{int(own.sum())} of {nodes} nodes with their own shape; in-sample error",
    )
    return NodePowerCurves(tuple(str(h) for h in names), k0, k1, k2, own, info)


def _around_standby(codes: np.ndarray, time_ns: np.ndarray, power: Floats) -> np.ndarray:
    """Buckets at standby power and the buckets either side of them on the same node: a node
    that powered down or woke within a bucket averages standby and awake power there, which
    no point of its awake curve explains."""
    order = np.lexsort((time_ns, codes))
    low = np.nan_to_num(power[order], nan=np.inf) <= STANDBY_MAX_W
    same = codes[order][1:] == codes[order][:-1]
    near = low.copy()
    near[1:] |= low[:-1] & same
    near[:-1] |= low[1:] & same
    out = np.zeros(len(power), dtype=np.bool_)
    out[order] = near
    return out


def _spread(node: np.ndarray, u: Floats, nodes: int) -> Floats:
    high = np.full(nodes, -np.inf)
    low = np.full(nodes, np.inf)
    np.maximum.at(high, node, u)
    np.minimum.at(low, node, u)
    return np.where(np.isfinite(high), high - low, 0.0)


def _best_shape(
    node: np.ndarray, u: Floats, p: Floats, nodes: int
) -> tuple[Floats, Floats, Floats]:
    """Per node, the grid ``K2`` with the least squared error and its closed-form ``K0, K1``."""
    k1, k2 = _shape_fit(node, node, u, p, nodes, nodes)
    n = np.maximum(np.bincount(node, minlength=nodes), 1).astype(np.float64)
    p_mean = np.bincount(node, weights=p, minlength=nodes) / n
    x_mean = np.bincount(node, weights=np.exp(k2[node] * u), minlength=nodes) / n
    return p_mean - k1 * x_mean, k1, k2


def _shape_fit(
    level: np.ndarray, group: np.ndarray, u: Floats, p: Floats, levels: int, groups: int
) -> tuple[Floats, Floats]:
    """Per group, the grid ``K2`` and its ``K1`` that best explain each bucket's power, less
    its level's mean, by ``e^(K2·u)`` less its level's mean: one intercept per level, one
    shape per group (a node fitted alone is both)."""
    dp = _centred(p, level, levels)
    k1, k2 = np.zeros(groups), np.zeros(groups)
    least = np.full(groups, np.inf)
    for shape in SHAPE_GRID:
        dx = _centred(np.exp(shape * u), level, levels)
        sxx = np.bincount(group, weights=dx * dx, minlength=groups)
        sxy = np.bincount(group, weights=dx * dp, minlength=groups)
        slope = np.where(sxx > 1e-12, sxy / np.maximum(sxx, 1e-12), 0.0)
        resid = dp - slope[group] * dx
        sse = np.bincount(group, weights=resid * resid, minlength=groups)
        better = sse < least - 1e-9
        least = np.where(better, sse, least)
        k1 = np.where(better, slope, k1)
        k2 = np.where(better, shape, k2)
    return k1, k2


def _centred(values: Floats, level: np.ndarray, levels: int) -> Floats:
    """``values`` less the mean of their level."""
    n = np.maximum(np.bincount(level, minlength=levels), 1)
    return np.asarray(values - (np.bincount(level, weights=values, minlength=levels) / n)[level])


def _model_of(gpus: Series, names: np.ndarray) -> Ints:
    """Per node (``names`` order), a code of its GPU model (nodes with none share one)."""
    model = dict(zip(tag(gpus, "host").tolist(), tag(gpus, "model").tolist(), strict=True))
    codes, _ = factorize(np.array([str(model.get(h, "")) for h in names], dtype=object))
    return codes


def _pooled_shape(
    node: np.ndarray, u: Floats, p: Floats, nodes: int, model: Ints
) -> tuple[Floats, Floats]:
    """``K1, K2`` per node, shared by the nodes of one GPU model, from how each node's power
    moved with its own load: every node keeps its own level (its workloads may draw more or
    less at the same utilization), so only the rise within nodes shapes the curve. Nodes
    whose own load never moved still borrow it. A model none of whose nodes moved falls
    back to the fit across its nodes' levels."""
    groups = int(model.max()) + 1 if nodes else 0
    group = model[node]
    _, across_k1, across_k2 = _best_shape(group, u, p, groups)
    within_k1, within_k2 = _shape_fit(node, group, u, p, nodes, groups)
    # Enough movement: utilization deviations worth MIN_UTIL_SPREAD over a handful of buckets.
    du = _centred(u, node, nodes)
    moved = np.bincount(group, weights=du * du, minlength=groups) >= MIN_UTIL_SPREAD**2
    k1 = np.where(moved, within_k1, across_k1)
    k2 = np.where(moved, within_k2, across_k2)
    return k1[model], k2[model]
