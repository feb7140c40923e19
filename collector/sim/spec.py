"""What fleet to simulate: its nodes, their places, GPU models and workloads, and the seed."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wattwise.collector.sim.faults import FaultSpec
from wattwise.collector.sim.models import GPU_MODELS
from wattwise.collector.sim.thermal import AirflowParams, CoolingParams
from wattwise.collector.sim.truths import DEFAULT_TRUTH, TRUTHS
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS, WorkloadSpec
from wattwise.errors import ConfigError

MAX_NODES_PER_RACK = 64
"""Real racks hold a bounded number of nodes, and the twin's physics needs the bound: a rack's
exhaust recirculates into its own inlet in proportion to its power, and leakage grows with die
temperature without a ceiling, so a rack of thousands of nodes heats without bound (inlet and
GPU temperatures reach inf, then NaN). At 64 nodes the loop still settles."""


class NodeSpec(BaseModel):
    """One simulated node and its place in the data center."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    cluster: str
    zone: str
    rack: str
    slot: int = Field(ge=0, description="height in the rack, 0 at the bottom")
    gpu_model: str = "H100_SXM"
    gpus: int = Field(8, ge=1, le=16)


class PowerSaving(BaseModel):
    """The site's node power saving (as Slurm's ``SuspendTime``/``ResumeTimeout`` run it).

    A node whose GPUs have all been free for ``suspend_after_s`` is powered down and
    draws ``standby_w`` (BMC, PSU losses); a job started on it powers it up again, and
    the job waits ``resume_s`` while the node boots.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    suspend_after_s: float = Field(300.0, gt=0, description="idle time before a node sleeps")
    standby_w: float = Field(40.0, ge=0, description="wall power of a powered-down node")
    resume_s: float = Field(120.0, ge=0, description="boot time of a woken node")


class FleetSpec(BaseModel):
    """A whole simulated fleet. Same spec and seed, same readings for the same clock."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    nodes: tuple[NodeSpec, ...] = Field(min_length=1)
    workloads: tuple[WorkloadSpec, ...] = DEFAULT_WORKLOADS
    busy_share: float = Field(0.8, ge=0, le=1, description="share of GPUs busy at start")
    idle_gap_mean_s: float = Field(120.0, gt=0, description="mean idle time between jobs")
    setpoint_c: float = Field(20.0, ge=10, le=35, description="initial supply setpoint")
    seed: int = 0
    airflow: AirflowParams = AirflowParams()
    cooling: CoolingParams = CoolingParams()
    faults: FaultSpec = Field(
        default_factory=FaultSpec, description="ECC errors and XIDs (none by default)"
    )
    power_saving: PowerSaving | None = Field(
        None, description="node power saving of the site; None: nodes are never powered down"
    )
    truth: str = Field(
        DEFAULT_TRUTH, description="which of the twin's truths (collector/sim/truths.py) runs"
    )

    @model_validator(mode="after")
    def _check(self) -> FleetSpec:
        hosts = [n.host for n in self.nodes]
        if len(set(hosts)) != len(hosts):
            raise ValueError("host names must be unique")
        unknown = {n.gpu_model for n in self.nodes} - set(GPU_MODELS)
        if unknown:
            raise ValueError(f"unknown GPU models {sorted(unknown)}; known: {sorted(GPU_MODELS)}")
        _check_rack_sizes(self.nodes)
        if self.truth not in TRUTHS:
            raise ValueError(f"unknown truth {self.truth!r}; known: {', '.join(TRUTHS)}")
        return self

    @classmethod
    def uniform(
        cls,
        nodes: int,
        gpus_per_node: int = 8,
        *,
        racks: int = 1,
        zones: int = 1,
        gpu_model: str = "H100_SXM",
        cluster: str = "sim",
        seed: int = 0,
        **options: object,
    ) -> FleetSpec:
        """``nodes`` nodes spread evenly over ``racks`` racks, racks over ``zones`` zones.

        Hosts are named ``sim-r01-n03`` (rack 1, node 3 from the bottom), racks
        ``r01`` and zones ``z1``. ``options`` are further FleetSpec fields.
        """
        if not 1 <= racks <= nodes or not 1 <= zones <= racks:
            raise ValueError("need 1 ≤ zones ≤ racks ≤ nodes")
        specs = []
        for index in range(nodes):
            rack = index * racks // nodes
            slot = index - _first_node_of(rack, racks, nodes)
            specs.append(
                NodeSpec(
                    host=f"sim-r{rack + 1:02d}-n{slot + 1:02d}",
                    cluster=cluster,
                    zone=f"z{rack * zones // racks + 1}",
                    rack=f"r{rack + 1:02d}",
                    slot=slot,
                    gpu_model=gpu_model,
                    gpus=gpus_per_node,
                )
            )
        return cls.model_validate({"nodes": tuple(specs), "seed": seed, **options})


def _first_node_of(rack: int, racks: int, nodes: int) -> int:
    return -(-rack * nodes // racks)


def _check_rack_sizes(nodes: tuple[NodeSpec, ...]) -> None:
    """ConfigError (not a ValueError, so pydantic passes it on unchanged) for an overfull rack."""
    for rack, count in Counter(n.rack for n in nodes).items():
        if count > MAX_NODES_PER_RACK:
            raise ConfigError(
                f"rack {rack!r} nodes",
                count,
                f"1–{MAX_NODES_PER_RACK} per rack: a denser rack heats its own inlet without"
                " bound; spread the nodes over more racks",
            )
