"""Kubernetes scheduler extender: kube-scheduler's ``filter`` and ``prioritize`` calls answered
from placement.

kube-scheduler POSTs ``ExtenderArgs`` and reads ``ExtenderFilterResult`` /
``HostPriorityList``; the Go structs carry no JSON tags, so keys are the Go field
names (``Pod``, ``Nodes``, ``NodeNames``…), while the Pod and Node objects inside
are ordinary camelCase Kubernetes JSON. ``Nodes`` (a NodeList) comes when the
extender is not node-cache-capable and ``NodeNames`` when it is; the other is
null. The answer uses the same form as the question: a scheduler that sent
``Nodes`` reads only ``Nodes.items`` back.

Node names are taken to be the agent's ``host`` tag. A GPU pod is refused on a node
wattwise has no telemetry for, since its rack budget could not be checked; pods
without GPUs pass everywhere and score 0 (no opinion).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wattwise.optimizer.models.workload import WorkloadProfile
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import PlacementSettings
from wattwise.optimizer.recommend.types import PlacementResult

GPU_RESOURCE = "nvidia.com/gpu"
MAX_SCORE = 10
"""kube-scheduler's MaxExtenderPriority."""
ANNOTATION_CLASS = "wattwise.io/workload-class"
ANNOTATION_POWER = "wattwise.io/expected-power-w"
UNKNOWN_NODE = "wattwise has no telemetry for this node"
_QUANTITY = re.compile(r"^([0-9]{1,9})(m|k)?$")
MAX_GPUS = 64
"""A pod asking for more GPUs on one node than any node has is not a placement question."""


class ExtenderRequestError(ValueError):
    """The scheduler's request is not a valid ExtenderArgs (the API answers 400)."""


def extender_filter(
    args: object,
    view: FleetView,
    settings: PlacementSettings,
    profiles: Mapping[str, WorkloadProfile] | None = None,
) -> dict[str, Any]:
    """``ExtenderFilterResult`` for ``ExtenderArgs``: the nodes that can take the pod."""
    pod, items, names = _parse_args(args)
    result = _place(pod, names, view, settings, profiles)
    if result is None:
        passed, failed = names, {}
    else:
        fits = {c.host for c in result.candidates}
        passed = [n for n in names if n in fits]
        failed = {n: result.rejected.get(n, UNKNOWN_NODE) for n in names if n not in fits}
    kept = set(passed)
    return {
        "Nodes": None
        if items is None
        else {**_mapping(args)["Nodes"], "items": [i for i in items if _name(i) in kept]},
        "NodeNames": passed if items is None else None,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }


def extender_prioritize(
    args: object,
    view: FleetView,
    settings: PlacementSettings,
    profiles: Mapping[str, WorkloadProfile] | None = None,
) -> list[dict[str, Any]]:
    """``HostPriorityList``: 10 for the node adding the least power, down to 1 for the most;
    0 for nodes that cannot take the pod (and for every node when the pod wants no GPU)."""
    pod, _, names = _parse_args(args)
    result = _place(pod, names, view, settings, profiles)
    scores = dict.fromkeys(names, 0)
    if result is not None and result.candidates:
        totals = {c.host: c.marginal_it_w + c.marginal_cooling_w for c in result.candidates}
        low, high = min(totals.values()), max(totals.values())
        for host, total in totals.items():
            share = 0.0 if high <= low else (total - low) / (high - low)
            scores[host] = max(1, round(MAX_SCORE - share * (MAX_SCORE - 1)))
    return [{"Host": n, "Score": scores[n]} for n in names]


def pod_gpu_request(pod: Mapping[str, Any]) -> int:
    """GPUs the pod asks for: containers' limits summed, or the largest init container's."""
    spec = _mapping(pod.get("spec", {}), "Pod.spec")
    main = sum(_gpus_of(c) for c in _list(spec.get("containers") or [], "containers"))
    init = [_gpus_of(c) for c in _list(spec.get("initContainers") or [], "initContainers")]
    return max([main, *init])


def _place(
    pod: Mapping[str, Any],
    names: list[str],
    view: FleetView,
    settings: PlacementSettings,
    profiles: Mapping[str, WorkloadProfile] | None,
) -> PlacementResult | None:
    gpus = pod_gpu_request(pod)
    if gpus == 0:
        return None
    annotations = _mapping(_mapping(pod.get("metadata") or {}, "metadata").get("annotations") or {})
    power = annotations.get(ANNOTATION_POWER)
    if gpus > MAX_GPUS:
        raise ExtenderRequestError(f"{GPU_RESOURCE} {gpus} is more than {MAX_GPUS} on one node")
    try:
        if power is not None and not isinstance(power, str):
            raise ValueError(f"{ANNOTATION_POWER} must be a string, as every annotation")
        request = PlacementRequest(
            gpus=gpus,
            workload_class=annotations.get(ANNOTATION_CLASS),
            expected_power_w=float(power) if power is not None else None,
        )
    except ValueError as e:
        raise ExtenderRequestError(f"pod annotations: {e}") from e
    known = set(view.node_host.astype(str))
    others = tuple(h for h in known if h not in set(names))
    everyone = settings.model_copy(update={"max_candidates": max(len(known), 1)})
    return recommend_placement(
        request.model_copy(update={"exclude_hosts": others}), view, everyone, profiles
    )


def _parse_args(
    args: object,
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]] | None, list[str]]:
    body = _mapping(args, "request body")
    pod = _mapping(body.get("Pod"), "Pod")
    nodes, node_names = body.get("Nodes"), body.get("NodeNames")
    if nodes is not None:
        items = [
            _mapping(i, "Nodes.items[]")
            for i in _list(_mapping(nodes, "Nodes").get("items") or [], "Nodes.items")
        ]
        return pod, items, [_name(i) for i in items]
    if node_names is not None:
        names = _list(node_names, "NodeNames")
        if not all(isinstance(n, str) for n in names):
            raise ExtenderRequestError("NodeNames must be a list of strings")
        return pod, None, [str(n) for n in names]
    raise ExtenderRequestError("one of Nodes or NodeNames must be given")


def _gpus_of(container: object) -> int:
    resources = _mapping(_mapping(container, "container").get("resources") or {}, "resources")
    limits = _mapping(resources.get("limits") or {}, "limits")
    value = limits.get(GPU_RESOURCE)
    if value is None:
        return 0
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    match = _QUANTITY.match(text)
    if match is None:
        raise ExtenderRequestError(f"{GPU_RESOURCE} limit {value!r} is not a whole number")
    number, suffix = int(match.group(1)), match.group(2)
    if suffix == "m":
        if number % 1000:
            raise ExtenderRequestError(f"{GPU_RESOURCE} limit {value!r} is not a whole number")
        return number // 1000
    return number * 1000 if suffix == "k" else number


def _name(item: Mapping[str, Any]) -> str:
    name = _mapping(item.get("metadata"), "Node.metadata").get("name")
    if not isinstance(name, str) or not name:
        raise ExtenderRequestError("every node needs metadata.name")
    return name


def _mapping(value: object, what: str = "value") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ExtenderRequestError(f"{what} must be a JSON object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ExtenderRequestError(f"{what} must be a JSON list")
    return value
