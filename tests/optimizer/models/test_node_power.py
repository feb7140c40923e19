"""Per-node power curves P(u) = K0 + K1·e^(K2·u): fitted per node, pooled shape for flat nodes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optimizer.twin import walked_setpoint
from wattwise.optimizer.models import common, node_power
from wattwise.optimizer.models.node_power import fit_node_power_curves, node_utilization
from wattwise.optimizer.telemetry import Series


def _synthetic(
    shapes: dict[str, tuple[float, float, float, float]], centers: dict[str, float] | None = None
) -> tuple[Series, Series]:
    """One GPU per node, 200 buckets; per node (K0, K1, K2, utilization spread) around its
    ``centers`` utilization (0.5)."""
    rng = np.random.default_rng(1)
    gpus_t, gpus_h, util_all, hosts_p = [], [], [], []
    for host, (k0, k1, k2, spread) in shapes.items():
        util = (centers or {}).get(host, 0.5) + spread * (rng.random(200) - 0.5)
        gpus_t.append(np.arange(200) * 60 * 10**9)
        gpus_h += [host] * 200
        util_all.append(util)
        hosts_p.append(k0 + k1 * np.exp(k2 * util) + rng.normal(0, 5, 200))
    times = np.concatenate(gpus_t)
    hosts = np.array(gpus_h, dtype=object)
    gpus = Series(
        times,
        {"host": hosts, "gpu": np.full(times.size, "0", dtype=object)},
        {"util_gpu_pct": 100 * np.concatenate(util_all)},
    )
    return gpus, Series(times, {"host": hosts}, {"node_power_w": np.concatenate(hosts_p)})


def test_curves_recover_known_shapes_and_flat_nodes_borrow_the_pooled_shape() -> None:
    truth = {
        "a": (1000.0, 800.0, 1.0, 1.0),
        "b": (900.0, 800.0, 1.0, 1.0),
        "c": (950.0, 800.0, 1.0, 0.02),
    }
    gpus, hosts = _synthetic(truth)
    curves = fit_node_power_curves(gpus, hosts)
    assert curves.hosts == ("a", "b", "c")
    assert list(curves.own_shape) == [True, True, False]
    u = np.linspace(0, 1, 11)
    for i, (k0, k1, k2, _) in enumerate(truth.values()):
        predicted = curves.power_w(np.full(11, i), u)
        if i < 2:
            assert np.max(np.abs(predicted - (k0 + k1 * np.exp(k2 * u)))) < 30.0
    marginal = curves.marginal_w(np.array([0, 0]), np.array([0.1, 0.8]), np.array([0.2, 0.2]))
    assert marginal[1] > marginal[0] > 0  # convex: the same load costs more on a busy node


def test_twin_node_power_is_predicted_within_a_few_percent() -> None:
    data = walked_setpoint()
    curves = fit_node_power_curves(data.gpus, data.hosts)
    assert len(curves.hosts) == 8
    assert curves.info.errors["mape_pct"] < 6.0


def test_regression_flat_nodes_borrow_the_rise_within_nodes_not_the_gap_between_levels() -> None:
    """A busy node running a hungrier workload sits higher than a quiet one; the pooled shape
    was fitted across the nodes' levels, read that gap as a steep curve, and charged a
    flat busy node ~1 kW per added GPU on the twin, so placement woke sleeping nodes."""
    truth = {
        "busy": (1400.0, 2000.0, 0.25, 0.02),
        "quiet": (-1200.0, 2000.0, 0.25, 0.02),
        "moving": (600.0, 2000.0, 0.25, 0.6),
    }
    gpus, hosts = _synthetic(truth, centers={"busy": 0.85, "quiet": 0.15, "moving": 0.5})
    curves = fit_node_power_curves(gpus, hosts)
    row = curves.index()
    assert dict(zip(curves.hosts, curves.own_shape.tolist(), strict=True)) == {
        "busy": False,
        "quiet": False,
        "moving": True,
    }
    rows = np.array([row["busy"], row["quiet"]])
    rises = curves.marginal_w(rows, np.array([0.85, 0.15]), np.array([0.15, 0.15]))
    for rise, (u0, u1) in zip(rises, [(0.85, 1.0), (0.15, 0.3)], strict=True):
        expected = 2000.0 * (np.exp(0.25 * u1) - np.exp(0.25 * u0))
        assert abs(rise - expected) < 0.25 * expected


def test_node_utilization_is_each_nodes_mean_over_its_gpus_readings_in_the_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing readings count out; a bucket with none, a node without GPU rows, and a
    stamp off the GPUs' buckets or past them are NaN; worked in slices of three rows, the
    same."""
    minute = 60 * 10**9
    nan = np.nan
    rows = [  # (host, bucket, utilization %)
        ("b", 0, 50.0), ("b", 0, 70.0), ("b", 1, nan), ("b", 1, 30.0),
        ("a", 0, 10.0), ("a", 0, nan), ("a", 2, nan), ("a", 2, nan),
    ]  # fmt: skip
    gpus = Series(
        np.array([t * minute for _, t, _ in rows], dtype=np.int64),
        {"host": np.array([h for h, _, _ in rows], dtype=object)},
        {"util_gpu_pct": np.array([u for _, _, u in rows])},
    )
    asked = [("a", 0), ("a", 2), ("b", 0), ("b", 1), ("c", 0), ("b", 2), ("b", 0.5), ("a", 9)]
    hosts = Series(
        np.array([int(t * minute) for _, t in asked], dtype=np.int64),
        {"host": np.array([h for h, _ in asked], dtype=object)},
    )
    expected = [0.10, nan, 0.60, 0.30, nan, nan, nan, nan]
    np.testing.assert_allclose(node_utilization(gpus, hosts), expected)
    monkeypatch.setattr(common, "SLICE_ROWS", 3)
    monkeypatch.setattr(node_power, "SLICE_ROWS", 3)
    np.testing.assert_allclose(node_utilization(gpus, hosts), expected)
