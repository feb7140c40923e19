"""Placement and the Kubernetes scheduler extender, answered from the engine's snapshot.

The recommenders live in :mod:`wattwise.optimizer.recommend.placement` and
:mod:`wattwise.optimizer.recommend.kube`; this module turns API bodies into
their arguments and their results into JSON.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict
from types import ModuleType
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from wattwise.errors import NotReady

from ..models.common import ModelInfo
from ..recommend.slurm import nodelist
from .engine import Engine
from .schemas import PlacementBody
from .views import clean


def model_dict(info: ModelInfo) -> dict[str, object]:
    out = clean(asdict(info))
    assert isinstance(out, dict)
    return out


def _recommender(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"wattwise.optimizer.recommend.{name}")
    except ModuleNotFoundError as e:
        raise NotReady(f"the {name} recommender is not installed") from e


def place(engine: Engine, body: PlacementBody) -> dict[str, object]:
    placement = _recommender("placement")
    snapshot = engine.snapshot
    try:
        request = placement.PlacementRequest(**body.model_dump(exclude_none=True))
    except ValidationError as e:
        raise HTTPException(422, [err["msg"] for err in e.errors()]) from e
    result = placement.recommend_placement(
        request, snapshot.fleet, engine.config.placement, engine.fitted.profiles
    )
    out = clean(result.as_dict())
    assert isinstance(out, dict)
    out["nodelist"] = nodelist(c.host for c in result.candidates)
    return out


def extender_filter(engine: Engine, args: dict[str, Any]) -> dict[str, Any]:
    kube = _recommender("kube")
    snapshot = engine.snapshot
    result: dict[str, Any] = kube.extender_filter(args, snapshot.fleet, engine.config.placement)
    return result


def extender_prioritize(engine: Engine, args: dict[str, Any]) -> list[dict[str, Any]]:
    kube = _recommender("kube")
    snapshot = engine.snapshot
    result: list[dict[str, Any]] = kube.extender_prioritize(
        args, snapshot.fleet, engine.config.placement
    )
    return result
