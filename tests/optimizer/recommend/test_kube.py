"""The scheduler extender's filter and prioritize on the JSON kube-scheduler really sends."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.kube import (
    UNKNOWN_NODE,
    ExtenderRequestError,
    extender_filter,
    extender_prioritize,
    pod_gpu_request,
)
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.telemetry import GpuState

BUSY = {"gpu-a": 0, "gpu-b": 6, "gpu-c": 8}
"""Busy GPUs per node (of 8): gpu-c is full, gpu-b has two free."""


def _gpu(host: str, index: int, busy: bool) -> GpuState:
    util = 95.0 if busy else 0.0
    return GpuState(
        host=host, gpu=index, uuid=f"GPU-{host}-{index}", model="NVIDIA H100 80GB HBM3",
        cluster="prod", zone="z1", rack=f"rack-{host}", time_ns=0, power_w=80.0 + 6.0 * util,
        temp_c=35.0 + util / 3, util_gpu_pct=util, util_mem_pct=0.0, sm_clock_mhz=1980.0,
        power_limit_w=700.0, enforced_limit_w=700.0, min_limit_w=200.0, max_limit_w=700.0,
        default_limit_w=700.0, slowdown_temp_c=87.0, mem_used_bytes=0.0, mem_total_bytes=80e9,
        failed=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def view() -> FleetView:
    gpus = [_gpu(h, i, i < busy) for h, busy in BUSY.items() for i in range(8)]
    return FleetView.build(gpus, [], [])


def _node(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {"kubernetes.io/hostname": name, "nvidia.com/gpu.product": "H100"},
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "96", "memory": "2Ti", "nvidia.com/gpu": "8"},
            "allocatable": {"cpu": "95", "memory": "2000Gi", "nvidia.com/gpu": "8"},
        },
    }


def _pod(gpus: str | None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    limits = {"cpu": "8", "memory": "64Gi"}
    if gpus is not None:
        limits["nvidia.com/gpu"] = gpus
    return {
        "metadata": {"name": "train-0", "namespace": "ml", "annotations": annotations or {}},
        "spec": {
            "schedulerName": "default-scheduler",
            "containers": [
                {"name": "trainer", "image": "pytorch:2.3", "resources": {"limits": limits}},
                {"name": "sidecar", "image": "busybox", "resources": {}},
            ],
        },
    }


def _with_nodes(pod: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A non-cache-capable scheduler's ExtenderArgs, as its JSON round trip gives it."""
    body = {
        "Pod": pod,
        "Nodes": {"metadata": {"resourceVersion": "42"}, "items": [_node(n) for n in names]},
        "NodeNames": None,
    }
    return dict(json.loads(json.dumps(body)))


def _with_names(pod: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return dict(json.loads(json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names})))


def test_filter_echoes_node_items_when_asked_with_nodes(view: FleetView) -> None:
    args = _with_nodes(_pod("2"), ["gpu-a", "gpu-b", "gpu-c"])
    result = extender_filter(args, view, PlacementSettings())
    assert set(result) == {
        "Nodes",
        "NodeNames",
        "FailedNodes",
        "FailedAndUnresolvableNodes",
        "Error",
    }
    assert result["NodeNames"] is None
    assert [i["metadata"]["name"] for i in result["Nodes"]["items"]] == ["gpu-a", "gpu-b"]
    assert result["Nodes"]["items"][0] == args["Nodes"]["items"][0]
    assert result["Nodes"]["metadata"] == {"resourceVersion": "42"}
    assert "fewer than 2 free GPUs" in result["FailedNodes"]["gpu-c"]
    assert result["FailedAndUnresolvableNodes"] == {} and result["Error"] == ""
    json.dumps(result)


def test_filter_answers_with_node_names_when_asked_with_node_names(view: FleetView) -> None:
    result = extender_filter(_with_names(_pod("3"), ["gpu-a", "gpu-b", "new-node"]), view,
                             PlacementSettings())  # fmt: skip
    assert result["Nodes"] is None
    assert result["NodeNames"] == ["gpu-a"]
    assert "fewer than 3 free GPUs" in result["FailedNodes"]["gpu-b"]
    assert result["FailedNodes"]["new-node"] == UNKNOWN_NODE


def test_filter_honours_rack_budget(view: FleetView) -> None:
    tight = PlacementSettings(rack_budgets_w={"rack-gpu-a": 100.0})
    result = extender_filter(_with_names(_pod("1"), ["gpu-a", "gpu-b"]), view, tight)
    assert result["NodeNames"] == ["gpu-b"]
    assert "power budget" in result["FailedNodes"]["gpu-a"]


def test_pod_without_gpus_passes_everywhere_and_scores_zero(view: FleetView) -> None:
    args = _with_names(_pod(None), ["gpu-a", "gpu-c", "elsewhere"])
    result = extender_filter(args, view, PlacementSettings())
    assert result["NodeNames"] == ["gpu-a", "gpu-c", "elsewhere"] and result["FailedNodes"] == {}
    assert [p["Score"] for p in extender_prioritize(args, view, PlacementSettings())] == [0, 0, 0]


def test_prioritize_scores_every_node_from_0_to_10(view: FleetView) -> None:
    args = _with_nodes(
        _pod("2", {"wattwise.io/expected-power-w": "650"}), ["gpu-a", "gpu-b", "gpu-c"]
    )
    scores = extender_prioritize(args, view, PlacementSettings())
    assert [s["Host"] for s in scores] == ["gpu-a", "gpu-b", "gpu-c"]
    assert all(isinstance(s["Score"], int) and 0 <= s["Score"] <= 10 for s in scores)
    assert scores[2]["Score"] == 0  # full node
    assert max(s["Score"] for s in scores) == 10
    json.dumps(scores)


@pytest.mark.parametrize(
    ("limit", "gpus"), [("2", 2), (4, 4), ("3000m", 3), ("0", 0)]
)  # fmt: skip
def test_gpu_quantities_are_read_as_kubernetes_writes_them(limit: Any, gpus: int) -> None:
    pod = _pod(None)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = limit
    assert pod_gpu_request(pod) == gpus


@pytest.mark.parametrize(
    "breaks",
    [
        lambda a: a.update(Nodes=None, NodeNames=None),
        lambda a: a.update(Pod="not a pod"),
        lambda a: a["Pod"]["spec"]["containers"][0]["resources"]["limits"].update(
            {"nvidia.com/gpu": "1.5"}
        ),
        lambda a: a["Pod"]["spec"].update(containers={"trainer": {}}),
        lambda a: a.update(NodeNames=[1, 2]),
        lambda a: a["Pod"]["metadata"].update(annotations={"wattwise.io/expected-power-w": "-3"}),
    ],
    ids=["no-nodes", "pod-not-object", "fractional-gpus", "containers-not-list", "names-not-str",
         "negative-power"],
)  # fmt: skip
def test_malformed_requests_raise_extender_request_error(view: FleetView, breaks: Any) -> None:
    args = copy.deepcopy(_with_names(_pod("1"), ["gpu-a"]))
    breaks(args)
    with pytest.raises(ExtenderRequestError):
        extender_filter(args, view, PlacementSettings())
    with pytest.raises(ValueError):
        extender_prioritize(args, view, PlacementSettings())


def test_body_that_is_not_an_object_is_refused(view: FleetView) -> None:
    with pytest.raises(ExtenderRequestError, match="request body"):
        extender_filter([1, 2], view, PlacementSettings())
