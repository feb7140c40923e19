from __future__ import annotations

import numpy as np

from wattwise.optimizer.models.node_other import DEFAULT_SLOPE, fit_node_other
from wattwise.optimizer.telemetry import Series


def _series(gpu_sums: np.ndarray, node_w: np.ndarray, hosts: int) -> tuple[Series, Series]:
    """One GPU per host (its power the host's GPU sum), buckets a minute apart."""
    t = np.repeat(np.arange(gpu_sums.shape[1]) * 60_000_000_000, hosts).astype(np.int64)
    names = np.tile(np.array([f"n{i}" for i in range(hosts)], dtype=object), gpu_sums.shape[1])
    gpus = Series(t, {"host": names, "gpu": np.full(t.size, "0", dtype=object)},
                  {"power_w": gpu_sums.T.ravel()})  # fmt: skip
    nodes = Series(t, {"host": names}, {"node_power_w": node_w.T.ravel()})
    return gpus, nodes


def test_the_supply_slope_and_each_nodes_other_power_are_recovered() -> None:
    rng = np.random.default_rng(1)
    gpu = rng.uniform(1000, 5000, (3, 30))
    base = np.array([[600.0], [800.0], [1000.0]])
    node = base + 1.07 * gpu + rng.normal(0, 5, gpu.shape)
    fit = fit_node_other(*_series(gpu, node, 3), quantile=0.5)
    assert fit.fitted and abs(fit.slope - 1.07) < 0.01
    assert abs(fit.other_w["n0"] - 600) < 20 and abs(fit.other_w["n2"] - 1000) < 20


def test_gpu_power_that_barely_moves_falls_back_to_the_default_slope() -> None:
    gpu = np.full((2, 30), 3000.0)
    fit = fit_node_other(*_series(gpu, 500 + 1.07 * gpu, 2))
    assert not fit.fitted and fit.slope == DEFAULT_SLOPE


def test_hosts_without_node_power_are_left_out() -> None:
    gpu = np.full((1, 5), 3000.0)
    fit = fit_node_other(*_series(gpu, np.full((1, 5), np.nan), 1))
    assert fit.other_w == {} and not fit.fitted
