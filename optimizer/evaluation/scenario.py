"""Scenario files: the fleet, its workloads and cooling, and how long to evaluate (TOML or YAML).

A scenario describes a fleet the way an operator would (racks in zones, nodes
and GPU models per rack, rack power budgets), the job mix, and the timing of
the evaluation. :meth:`Scenario.fleet_spec` turns it into the twin's
:class:`FleetSpec`; the same scenario and seed always give the same twin.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wattwise.collector.sim import DEFAULT_WORKLOADS, FleetSpec, NodeSpec, WorkloadSpec
from wattwise.collector.sim.models import GPU_MODELS, gpu_model
from wattwise.collector.sim.spec import MAX_NODES_PER_RACK, PowerSaving
from wattwise.collector.sim.thermal import AirflowParams
from wattwise.collector.sim.truths import DEFAULT_TRUTH, TRUTHS
from wattwise.errors import ConfigError
from wattwise.optimizer.recommend.budget_types import scope_kind, scope_name

_DEFAULTS = {w.name: w for w in DEFAULT_WORKLOADS}


class RackScenario(BaseModel):
    """One rack: where it stands, what it holds, and the power it may draw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    zone: str
    nodes: int = Field(ge=1, le=MAX_NODES_PER_RACK)
    gpus_per_node: int = Field(8, ge=1, le=16)
    gpu_model: str = "H100_SXM"
    budget_w: float | None = Field(None, gt=0, description="rack power budget at the PSUs")


class PlacementScenario(BaseModel):
    """The jobs the placement policies must place, one after another, at the start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int = Field(4, ge=1, le=64)
    gpus_per_job: int | tuple[int, ...] = Field(
        8, description="GPUs of every job, or sizes each job draws from (seeded)"
    )
    workload: str = "training"
    gpu_model: str | tuple[str, ...] | None = Field(
        None,
        description="substring of the GPU product name the jobs need (e.g. H100); a list: "
        "each job needs one of them, as users submit to one partition per GPU model",
    )
    background_busy_share: float = Field(
        0.5, ge=0, le=1, description="share of GPUs already running work before the jobs come"
    )
    background_idle_nodes: float = Field(
        0.0, ge=0, le=1, description="share of nodes with no background work at all"
    )
    background_whole_nodes: bool = Field(
        True, description="background fills whole nodes; false: some GPUs of each node"
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> PlacementScenario:
        sizes = (self.gpus_per_job,) if isinstance(self.gpus_per_job, int) else self.gpus_per_job
        if not sizes or not all(1 <= s <= 16 for s in sizes):
            raise ValueError("gpus_per_job must be 1–16 GPUs (or a non-empty list of such)")
        if self.gpu_model == ():
            raise ValueError("gpu_model must name at least one model (or be left out)")
        if self.background_whole_nodes and self.background_idle_nodes > 0:
            # whole-node background draws each node busy or idle by itself
            raise ValueError("background_idle_nodes needs background_whole_nodes = false")
        return self

    @property
    def gpu_models(self) -> tuple[str, ...]:
        """The models jobs may ask for; empty when any GPU will do."""
        if self.gpu_model is None:
            return ()
        return (self.gpu_model,) if isinstance(self.gpu_model, str) else self.gpu_model

    def job_sizes(self, seed: int) -> tuple[int, ...]:
        """GPUs of each job in arrival order; the same seed gives the same jobs."""
        if isinstance(self.gpus_per_job, int):
            return (self.gpus_per_job,) * self.jobs
        rng = np.random.default_rng(seed)
        return tuple(int(s) for s in rng.choice(self.gpus_per_job, size=self.jobs))


class BudgetEvent(BaseModel):
    """A timed limit on one scope, in seconds from when the policies start acting."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: str = Field(description="site, zone:<name> or rack:<name>")
    limit_w: float = Field(gt=0)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    reason: str = "demand response"

    @model_validator(mode="after")
    def _check(self) -> BudgetEvent:
        scope_kind(self.scope)
        if self.end_s <= self.start_s:
            raise ValueError("end_s must come after start_s")
        return self


class BudgetScenario(BaseModel):
    """Power limits besides the racks' ``budget_w``: zones, the site, and timed events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone_w: dict[str, float] = Field(default_factory=dict)
    site_w: float | None = Field(None, gt=0)
    events: tuple[BudgetEvent, ...] = ()


Experiment = Literal["caps", "placement", "cooling", "budget"]


@dataclass(frozen=True)
class PlacementJob:
    """One job the placement policies place: how many GPUs, and of which model if it cares."""

    gpus: int
    gpu_model: str | None


class Scenario(BaseModel):
    """Everything an evaluation replays; see docs/evaluation.md for the file format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    seed: int = 0
    cluster: str = "sim"
    racks: tuple[RackScenario, ...] = Field(min_length=1)
    workloads: tuple[WorkloadSpec, ...] = DEFAULT_WORKLOADS
    busy_share: float = Field(0.8, ge=0, le=1)
    idle_gap_mean_s: float = Field(120.0, gt=0)
    baseline_setpoint_c: float = Field(18.0, ge=10, le=35)
    airflow: dict[str, float] = Field(default_factory=dict)
    warmup_s: float = Field(900.0, ge=60, description="telemetry recorded before any policy acts")
    settle_s: float = Field(600.0, ge=0, description="policies act but nothing is measured yet")
    duration_s: float = Field(1200.0, ge=60, description="measured horizon")
    refresh_s: float = Field(300.0, ge=30, description="how often policies decide again")
    read_every_s: float = Field(15.0, gt=0, description="telemetry sampling period")
    slowdown_bound: float = Field(0.05, ge=0, le=1)
    power_saving: PowerSaving | None = Field(
        None, description="the site's node power saving, in the twins of every experiment"
    )
    placement: PlacementScenario = PlacementScenario()
    budget: BudgetScenario | None = Field(
        None, description="zone, site and timed limits; with it the budget experiment runs"
    )
    experiments: tuple[Experiment, ...] | None = Field(
        None,
        description="experiments to run; default caps, placement and cooling, and budget "
        "where the scenario has a [budget] section",
    )
    truth: str = Field(
        DEFAULT_TRUTH,
        description="the twin's truth (collector/sim/truths.py); `wattwise eval` runs every one",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_workloads(cls, data: Any) -> Any:
        """A workload named like a default (training, inference, memory_bound) inherits it."""
        if isinstance(data, dict) and isinstance(data.get("workloads"), list | tuple):
            data = {**data, "workloads": [_workload(w) for w in data["workloads"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        names = [r.name for r in self.racks]
        if len(set(names)) != len(names):
            raise ValueError("rack names must be unique")
        if self.truth not in TRUTHS:
            raise ValueError(f"unknown truth {self.truth!r}; known: {', '.join(TRUTHS)}")
        unknown = {r.gpu_model for r in self.racks} - set(GPU_MODELS)
        if unknown:
            raise ValueError(f"unknown GPU models {sorted(unknown)}; known: {sorted(GPU_MODELS)}")
        allowed = set(AirflowParams.__dataclass_fields__)
        if set(self.airflow) - allowed:
            raise ValueError(f"unknown airflow keys; known: {sorted(allowed)}")
        if self.placement.workload not in {w.name for w in self.workloads} | set(_DEFAULTS):
            raise ValueError(f"placement workload {self.placement.workload!r} is not defined")
        for wanted in self.placement.gpu_models:
            if self._gpus_matching(wanted) == 0:
                products = {gpu_model(r.gpu_model).product_name for r in self.racks}
                raise ValueError(
                    f"placement gpu_model {wanted!r} matches no rack's GPUs "
                    f"({', '.join(sorted(products))})"
                )
        if "budget" in (self.experiments or ()) and self.budget is None:
            raise ValueError("the budget experiment needs a [budget] section")
        if self.budget is not None:
            self._check_budget(self.budget)
        for step in ("warmup_s", "settle_s", "duration_s", "refresh_s", "read_every_s"):
            if getattr(self, step) % 0.25:
                raise ValueError(f"{step} must be a multiple of the twin's 0.25 s step")
        return self

    def _check_budget(self, budget: BudgetScenario) -> None:
        racks = {r.name for r in self.racks}
        unknown = set(budget.zone_w) - set(self.zones)
        if unknown:
            raise ValueError(f"budget.zone_w names unknown zones {sorted(unknown)}")
        for event in budget.events:
            kind, name = scope_kind(event.scope), scope_name(event.scope)
            known = racks if kind == "rack" else set(self.zones) if kind == "zone" else {""}
            if name not in known:
                raise ValueError(f"budget event scope {event.scope!r} names no {kind} here")

    @property
    def chosen_experiments(self) -> tuple[Experiment, ...]:
        if self.experiments is not None:
            return self.experiments
        budget: tuple[Experiment, ...] = ("budget",) if self.budget is not None else ()
        return ("caps", "placement", "cooling", *budget)

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.zone for r in self.racks))

    @property
    def rack_budgets_w(self) -> dict[str, float]:
        return {r.name: r.budget_w for r in self.racks if r.budget_w is not None}

    def placement_jobs(self) -> tuple[PlacementJob, ...]:
        """The jobs to place, in arrival order; the same seed gives the same jobs.

        Where jobs may ask for one of several models, each draws its model in
        proportion to the fleet's GPUs of that model: demand follows what is installed.
        """
        sizes = self.placement.job_sizes(self.seed)
        models = self.placement.gpu_models
        if len(models) < 2:
            return tuple(PlacementJob(g, models[0] if models else None) for g in sizes)
        installed = np.array([self._gpus_matching(m) for m in models], dtype=float)
        # a stream of its own, so adding models leaves the sizes as they were
        rng = np.random.default_rng([self.seed, len(models)])
        drawn = rng.choice(len(models), size=len(sizes), p=installed / installed.sum())
        return tuple(PlacementJob(g, models[i]) for g, i in zip(sizes, drawn, strict=True))

    def _gpus_matching(self, wanted: str) -> int:
        return sum(
            r.nodes * r.gpus_per_node
            for r in self.racks
            if wanted in gpu_model(r.gpu_model).product_name
        )

    def workload(self, name: str) -> WorkloadSpec:
        """A workload of this scenario by name, else the default of that name."""
        mine = {w.name: w for w in self.workloads}
        return mine.get(name) or _DEFAULTS[name]

    def fleet_spec(self, *, background: bool = True) -> FleetSpec:
        """The twin of this scenario; ``background=False`` starts no jobs by itself."""
        nodes = tuple(
            NodeSpec(
                host=f"{rack.name}-n{slot + 1:02d}",
                cluster=self.cluster,
                zone=rack.zone,
                rack=rack.name,
                slot=slot,
                gpu_model=rack.gpu_model,
                gpus=rack.gpus_per_node,
            )
            for rack in self.racks
            for slot in range(rack.nodes)
        )
        return FleetSpec(
            nodes=nodes,
            workloads=self.workloads if background else (),
            busy_share=self.busy_share if background else 0.0,
            idle_gap_mean_s=self.idle_gap_mean_s,
            setpoint_c=self.baseline_setpoint_c,
            seed=self.seed,
            airflow=AirflowParams(**self.airflow),
            power_saving=self.power_saving,
            truth=self.truth,
        )


def _workload(entry: Any) -> Any:
    if isinstance(entry, dict) and entry.get("name") in _DEFAULTS:
        return {**_DEFAULTS[entry["name"]].model_dump(), **entry}
    return entry


def load_scenario(path: Path) -> Scenario:
    """Read a ``.toml`` or ``.yaml``/``.yml`` scenario; ConfigError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(
            "scenario", str(path), "a readable scenario file", problem=f"cannot be read ({why})"
        ) from e
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError("scenario", str(path), "a .toml, .yaml or .yml file")
        return Scenario.model_validate(data)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError("scenario", str(path), f"valid {path.suffix[1:]}: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "scenario"
        raise ConfigError(key, first.get("input"), first["msg"]) from e
