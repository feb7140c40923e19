"""Placement and the Kubernetes scheduler extender, answered from the engine's snapshot.

The recommenders live in :mod:`wattwise.optimizer.recommend.placement` and
:mod:`wattwise.optimizer.recommend.kube`; this module turns API bodies into
their arguments and their results into JSON.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import HTTPException

from wattwise.common.strict_json import clean
from wattwise.errors import NotReady
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.recommend.kube import ExtenderRequestError
from wattwise.optimizer.recommend.kube import extender_filter as kube_filter
from wattwise.optimizer.recommend.kube import extender_prioritize as kube_prioritize
from wattwise.optimizer.recommend.placement import recommend_placement
from wattwise.optimizer.recommend.slurm import nodelist
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.service.published import checked_placement
from wattwise.optimizer.service.schemas import PlacementBody


def model_dict(info: ModelInfo) -> dict[str, object]:
    out = clean(asdict(info))
    assert isinstance(out, dict)
    return out


def dropped_values(engine: Engine) -> dict[str, int]:
    """Telemetry values dropped as physically impossible since start, by ``measurement.field``."""
    return {f"{m}.{f}": n for (m, f), n in sorted(engine.telemetry.dropped().items())}


def place(engine: Engine, body: PlacementBody, *, explain: bool = True) -> dict[str, object]:
    snapshot = engine.snapshot
    result = checked_placement(
        recommend_placement(
            body, snapshot.fleet, engine.config.placement, engine.fitted.profiles, explain=explain
        )
    )
    # The job runs on one host: Slurm gets the best candidate's, never the whole ranking
    # (--nodelist with ten hosts would allocate ten nodes to a 1-GPU job).
    best = [c.host for c in result.candidates[:1]]
    return {
        "candidates": [c.as_dict() for c in result.candidates],
        "rejected": result.rejected,
        "nodelist": nodelist(best),
    }


def extender_filter(engine: Engine, args: dict[str, Any]) -> dict[str, Any]:
    """``ExtenderFilterResult``; problems the scheduler should see go in its ``Error`` field
    with status 200, as the extender protocol expects."""
    try:
        snapshot = engine.snapshot
        result: dict[str, Any] = kube_filter(
            args, snapshot.fleet, engine.config.placement, engine.fitted.profiles
        )
    except (ExtenderRequestError, NotReady) as e:
        return {
            "Nodes": None,
            "NodeNames": None,
            "FailedNodes": {},
            "FailedAndUnresolvableNodes": {},
            "Error": f"wattwise: {e}",
        }
    return result


def extender_prioritize(engine: Engine, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``HostPriorityList``; it has no error field, so a bad request is a 400 (kube-scheduler
    ignores a failed prioritize and schedules on the other scores)."""
    snapshot = engine.snapshot
    try:
        result: list[dict[str, Any]] = kube_prioritize(
            args, snapshot.fleet, engine.config.placement, engine.fitted.profiles
        )
    except ExtenderRequestError as e:
        raise HTTPException(400, f"not a valid ExtenderArgs: {e}") from e
    return result
