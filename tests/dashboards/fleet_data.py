"""Ten simulated minutes of a small fleet, ending now, written into a real influxd.

1 cluster × 2 zones × 2 racks each × 2 nodes each × 2 GPUs: GPU readings every
second, host, cooling, job and agent readings every 10 s, plus recommendation
(power-budget plans encoded as the optimizer encodes them) and model lines
shaped per the schema. Planted on purpose so no panel can be empty: one GPU
falls off the bus (XID 79) for the last minute, one GPU is capped to its
minimum, one agent drops lines and one stops reporting half-way; the twin
counts corrected ECC errors and raises a double-bit ECC error (XID 48, then 63),
a failed row remap (64), an NVLink error (74) and an application error (13).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from tests.influxd import InfluxServer
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.faults import FaultSpec
from wattwise.collector.sim.views import JobView
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.recommend.budget_types import BudgetCap, BudgetPlan
from wattwise.optimizer.service.lines import budget_readings

DURATION_S = 600
SLOW_EVERY_S = 10
S = 1_000_000_000


@dataclass(frozen=True)
class FleetData:
    db: str
    start_ns: int
    end_ns: int
    hosts: tuple[str, ...]
    failed_gpu: tuple[str, str]
    silent_host: str
    dropping_host: str
    faults: dict[str, tuple[str, str]]
    """What was raised (``dbe``, ``remap_failed``, ``nvlink``, ``app``) → (host, GPU)."""


def write_fleet(server: InfluxServer, db: str) -> FleetData:
    end_ns = time.time_ns() // S * S
    start_ns = end_ns - DURATION_S * S
    clock = ManualClock(start_ns=start_ns)
    faults = FaultSpec(corrected_ecc_per_gpu_hour=30.0)
    fleet = SimFleet(FleetSpec.uniform(8, 2, racks=4, zones=2, seed=7, faults=faults), clock)
    hosts = tuple(t["host"] for t in fleet.layout.node_tags)
    failed = (hosts[1], "1")
    # the panels are also checked for hosts[0] alone: it gets the fatal ones
    raised = {
        "dbe": ((hosts[0], "1"), 48, 200),
        "remap_failed": ((hosts[0], "0"), 64, 300),
        "app": ((hosts[4], "0"), 13, 400),
        "nvlink": ((hosts[5], "1"), 74, 450),
        "lost": (failed, 79, DURATION_S - 60),
    }
    fleet.set_power_limit(hosts[0], 0, fleet.models[0].min_limit_w)
    gpus, nodes, jobs = fleet.gpu_source(), fleet.node_source(), JobView(fleet)
    lines: list[bytes] = []
    for tick in range(1, DURATION_S + 1):
        clock.advance(1.0)
        for (host, gpu), code, at in raised.values():
            if tick == at:
                fleet.raise_xid(host, int(gpu), code)
        readings = list(gpus.read())
        if tick % SLOW_EVERY_S == 0:
            readings += [*nodes.read(), *jobs.read(), *_agents(fleet, hosts, tick)]
        lines += encode_many(readings)
    lines += _recommendations(fleet, end_ns) + _budgets(fleet, end_ns) + _models(start_ns, end_ns)
    server.create_database(db)
    for i in range(0, len(lines), 5000):
        body = b"\n".join(lines[i : i + 5000])
        httpx.post(f"{server.url}/write", params={"db": db}, content=body).raise_for_status()
    where = {name: place for name, (place, _, _) in raised.items() if name != "lost"}
    return FleetData(db, start_ns, end_ns, hosts, failed, hosts[-1], hosts[0], where)


def _agents(fleet: SimFleet, hosts: tuple[str, ...], tick: int) -> list[Reading]:
    now_ns = fleet.clock.time_ns()
    readings = []
    for i, tags in enumerate(fleet.layout.node_tags):
        if tags["host"] == hosts[-1] and tick > DURATION_S // 2:
            continue  # this agent stops reporting half-way
        dropped = tick // 60 if tags["host"] == hosts[0] else 0
        fields: dict[str, float | int | None] = {
            "queue_lines": 40 + i,
            "queue_bytes": 4000 + 100 * i,
            "sent_lines_total": tick * 20,
            "retried_batches_total": tick // 100,
            "dropped_lines_total": dropped,
            "dead_lettered_lines_total": 0,
            "tick_duration_s": 0.004 + 0.001 * i,
            "tick_overruns_total": 0,
            "source_errors_total": 0,
        }
        node = {k: tags[k] for k in ("host", "cluster", "zone", "rack")}
        readings.append(Reading("agent", node, fields, now_ns))
    return readings


def _recommendations(fleet: SimFleet, end_ns: int) -> list[bytes]:
    readings = []
    for k, at_ns in enumerate((end_ns - 300 * S, end_ns - 60 * S)):
        for i, tags in enumerate(fleet.layout.gpu_tags):
            where = {t: tags[t] for t in ("cluster", "zone", "rack", "host", "gpu")}
            fields: dict[str, float | int | None] = {
                "current_limit_w": 700.0,
                "recommended_limit_w": 550.0 + 10 * i,
                "saving_w": 60.0 + k,
                "saving_pct": 9.0,
                "slowdown_pct": 2.5,
                "confidence": 0.8,
                "samples": 600,
            }
            tags_out = {**where, "kind": "power_cap", "objective": "slowdown_bound"}
            readings.append(Reading("recommendation", tags_out, fields, at_ns))
        for z, zone in enumerate(fleet.layout.zones):
            fields = {
                "current_setpoint_c": 20.0,
                "recommended_setpoint_c": 22.0 + z,
                "predicted_max_inlet_c": 25.5,
                "saving_w": 900.0,
                "saving_pct": 6.0,
            }
            tags_out = {"kind": "cooling", "cluster": fleet.layout.zone_cluster[z], "zone": zone}
            readings.append(Reading("recommendation", tags_out, fields, at_ns))
    for rank, node in enumerate(fleet.layout.node_tags, start=1):
        fields = {"rank": rank, "gpus": 2, "marginal_it_power_w": 1300.0 + rank}
        fields.update(marginal_cooling_power_w=260.0, confidence=0.7)
        tags_out = {**node, "kind": "placement", "job": "slurm-4242"}
        readings.append(Reading("recommendation", tags_out, fields, end_ns - 120 * S))
    return encode_many(readings)


def budget_plan(scope: str, limit_w: float, peak_w: float, capped: int) -> BudgetPlan:
    """A plan as the planner returns one: ``capped`` GPUs capped (the first applied) to bring
    ``peak_w`` under ``limit_w``; none, and not planned, when the peak is under 90 % of it."""
    planned = peak_w > 0.9 * limit_w
    caps = tuple(
        BudgetCap(f"sim-{scope}-{i}", 0, f"slurm-{i}", "normal", 700.0, 450.0, 700.0, 3.0, i == 0)
        for i in range(capped if planned else 0)
    )
    return BudgetPlan(
        scope=scope,
        limit_w=limit_w,
        event_id=None,
        gpus=16,
        predicted_peak_before_w=peak_w,
        predicted_peak_after_w=min(peak_w, 0.95 * limit_w),
        guaranteed_max_w=0.99 * limit_w,
        planned=planned,
        feasible=True,
        work_lost_pct=0.75 * len(caps),
        caps=caps,
        pause=(),
        applied_share=1.0 / len(caps) if caps else 1.0,
        reason="",
    )


def _budgets(fleet: SimFleet, end_ns: int) -> list[bytes]:
    scopes = ["site", *(f"zone:{z}" for z in fleet.layout.zones)]
    scopes += [f"rack:{r}" for r in fleet.layout.racks]
    readings = []
    for k, at_ns in enumerate((end_ns - 300 * S, end_ns - 60 * S)):
        plans = [
            budget_plan(scope, 20_000.0 + 1000 * i, 19_500.0 + 250 * k, 2 + k)
            for i, scope in enumerate(scopes)
        ]
        readings += budget_readings(plans, at_ns)
    return encode_many(readings)


def _models(start_ns: int, end_ns: int) -> list[bytes]:
    readings = []
    for version, at_ns in enumerate((start_ns + 60 * S, end_ns - 60 * S), start=1):
        for name, error in (("power", 4.0), ("cap_response", 7.5)):
            fields: dict[str, float | int | None] = {
                "version": version,
                "error_pct": error - version,
                "mae": 12.0 / version,
                "samples": 1000 * version,
                "train_start_ns": start_ns,
                "train_end_ns": at_ns,
            }
            tags = {"name": name, "gpu_model": "NVIDIA H100 80GB HBM3"}
            readings.append(Reading("model", tags, fields, at_ns))
    return encode_many(readings)
