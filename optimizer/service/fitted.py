"""The models of one refit, and keeping them in the model registry across restarts.

Every refit saves each fitted model as a new version through
:class:`~wattwise.optimizer.models.registry.ModelRegistry`; a starting optimizer
loads the newest version of each so it serves recommendations before its
first refit has finished. The workload profiles of a refit are one model of
kind ``workload``, so placement by job or class works from the first request
after a restart too.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from wattwise.errors import ModelFileError
from wattwise.optimizer.models.cap_response import CapResponseModel
from wattwise.optimizer.models.codecs import Model, with_info
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.models.node_power import NodePowerCurves
from wattwise.optimizer.models.power import PowerModel
from wattwise.optimizer.models.registry import ModelRegistry
from wattwise.optimizer.models.thermal import CoolingModel, GpuThermalModel, InletModel
from wattwise.optimizer.models.workload import WorkloadProfiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """Every model of one refit."""

    fitted_at_ns: int
    power: dict[str, PowerModel]
    cap_response: dict[str, CapResponseModel]
    gpu_thermal: dict[str, GpuThermalModel]
    inlets: dict[str, InletModel]
    cooling: dict[str, CoolingModel]
    curves: NodePowerCurves | None
    profiles: WorkloadProfiles

    @property
    def infos(self) -> tuple[ModelInfo, ...]:
        """What each model is, in the order of :meth:`models`."""
        return tuple(m.info for m in self.models())

    def models(self) -> list[Model]:
        groups: list[Iterable[Model]] = [
            self.power.values(),
            self.cap_response.values(),
            self.gpu_thermal.values(),
            self.inlets.values(),
            self.cooling.values(),
        ]
        out = [m for group in groups for m in group]
        return out + ([self.curves] if self.curves is not None else []) + [self.profiles]


def assemble(fitted_at_ns: int, models: Iterable[Model]) -> Fitted:
    """A :class:`Fitted` from loose models, each filed under its info's scope (no profiles
    among them, as in a registry written before they were kept: none)."""
    power: dict[str, PowerModel] = {}
    cap: dict[str, CapResponseModel] = {}
    thermal: dict[str, GpuThermalModel] = {}
    inlets: dict[str, InletModel] = {}
    cooling: dict[str, CoolingModel] = {}
    curves: NodePowerCurves | None = None
    profiles = WorkloadProfiles()
    for model in models:
        scope = model.info.scope
        if isinstance(model, PowerModel):
            power[scope] = model
        elif isinstance(model, CapResponseModel):
            cap[scope] = model
        elif isinstance(model, GpuThermalModel):
            thermal[scope] = model
        elif isinstance(model, InletModel):
            inlets[scope] = model
        elif isinstance(model, CoolingModel):
            cooling[scope] = model
        elif isinstance(model, WorkloadProfiles):
            profiles = model
        else:
            curves = model
    return Fitted(fitted_at_ns, power, cap, thermal, inlets, cooling, curves, profiles)


class KeptModels:
    """The registry as the engine uses it: save a refit, load the newest set, list, prune."""

    def __init__(self, directory: Path, keep_versions: int) -> None:
        self.registry = ModelRegistry(directory)
        self.keep_versions = keep_versions

    def save(self, fitted: Fitted) -> Fitted:
        """Store every model as a new version; ``fitted`` with the stored versions."""
        stored = [with_info(m, self.registry.save(m)) for m in fitted.models()]
        self.prune()
        return assemble(fitted.fitted_at_ns, stored)

    def load_latest(self) -> Fitted | None:
        """The newest version of every stored model; None when there are none.

        All or nothing: a set missing a model it once had would give
        recommendations no refit ever produced together.
        """
        newest = {(i.kind, i.scope): i for i in self.registry.list()}
        if not newest:
            return None
        models = [self.registry.load(kind, scope, i.version) for (kind, scope), i in newest.items()]
        fitted_at_ns = max(m.info.window_end_ns for m in models)
        return assemble(fitted_at_ns, models)

    def list(self) -> list[ModelInfo]:
        return self.registry.list()

    def prune(self) -> None:
        """Delete all but the newest ``keep_versions`` versions of each kind and scope."""
        versions: dict[tuple[str, str], list[int]] = defaultdict(list)
        for info in self.registry.list():
            versions[(info.kind, info.scope)].append(info.version)
        for (kind, scope), found in versions.items():
            folder = self.registry.directory / kind / quote(scope, safe="")
            for version in sorted(found)[: -self.keep_versions]:
                # The JSON first: without it the version is no longer listed or loaded.
                for suffix in (".json", ".npz"):
                    (folder / f"v{version}{suffix}").unlink(missing_ok=True)


def load_or_none(kept: KeptModels) -> Fitted | None:
    """The stored models, or None (logged) when the registry cannot give a whole set."""
    try:
        return kept.load_latest()
    except (ModelFileError, OSError) as e:
        log.warning("not starting from the stored models (%s); waiting for the first refit", e)
        return None
