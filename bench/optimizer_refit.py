"""Full refit and every recommendation on 24 h of 1-minute aggregates, at fleet scale.

Run as ``.venv/bin/python bench/optimizer_refit.py --gpus 1000 10000``. For each size
it builds the Series the stores would return for 24 h × 1-minute buckets (the
fleet twin's physics, vectorised per minute: jobs of the twin's default mix,
the H100's DVFS under 700 W and 500 W limits, GPU temperature over the inlet,
inlets over the supply with rack recirculation, cooling power over a COP), then
times the refit (power, cap response, workloads, job profiles, thermal, node
curves) and the recommendations (caps for all GPUs, cooling for all zones, one
placement), and prints wall time per stage and the process's peak RSS.

With ``--stores influx victoria`` the same day is written as line protocol into a
real influxd and a real VictoriaMetrics (one at a time, each in a temporary
directory; :mod:`refit_stores` beside this script), and the refit reads it back through the
InfluxDB store and the Prometheus store instead of taking the Series in memory:
the ``read`` stage is the four series reads and the latest states.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' servers

from refit_stores import load, read_fleet, write_fleet  # beside this script

from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models
from wattwise.optimizer.models.limit_response import ClockCurve
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.models.power import fit_power_models
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.models.workload import job_profiles
from wattwise.optimizer.recommend.caps import recommend_caps
from wattwise.optimizer.recommend.cooling import ThermalFits, recommend_cooling
from wattwise.optimizer.recommend.fleet_view import FleetView
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.recommend.settings import CapSettings, CoolingSettings, PlacementSettings
from wattwise.optimizer.telemetry import GpuState, HostState, Series, TelemetryStore, ZoneState

MINUTES = 24 * 60
GPUS_PER_NODE, NODES_PER_RACK, ZONES = 8, 8, 4
START_NS = 1_700_000_000 * 10**9
MODEL = "NVIDIA H100 80GB HBM3"
# (compute c, memory m, duty low, duty high, mean length min, weight): the twin's default mix
KINDS = np.array(
    [(0.95, 0.35, 0.9, 1.0, 30, 3), (0.6, 0.5, 0.3, 0.7, 10, 2), (0.05, 1.0, 0.8, 1.0, 15, 1)]
)
STATIC_W, CTX_W, K_C, K_M, TOP_MHZ = 77.0, 46.0, 727.0, 263.0, 1980.0
CURVE = ClockCurve(0.49, 0.92)
"""The H100's clock curve (optimizer/models/priors.py)."""


@dataclass
class Fleet:
    gpus: Series
    hosts: Series
    zones: Series
    jobs: Series
    gpu_states: list[GpuState]
    host_states: list[HostState]
    zone_states: list[ZoneState]


def simulate(gpus: int, seed: int = 0) -> Fleet:
    rng = np.random.default_rng(seed)
    nodes = gpus // GPUS_PER_NODE
    kind, duty, job = _jobs(rng, gpus)
    busy = np.where(kind >= 0, duty, 0.0)
    c, m = KINDS[np.maximum(kind, 0), 0] * (kind >= 0), KINDS[np.maximum(kind, 0), 1] * (kind >= 0)
    limit = np.where(rng.random(gpus) < 0.3, 500.0, 700.0)[:, None] * np.ones((1, MINUTES))
    static = STATIC_W + CTX_W * (kind >= 0)
    share = (limit - static - busy * m * K_M) / np.maximum(busy * c * K_C, 1e-9)
    x = np.where(share >= 1.0, 1.0, CURVE.phi_inverse(np.clip(share, 0, 1)))
    x = np.maximum(np.floor(x * TOP_MHZ / 15) * 15 / TOP_MHZ, 345 / TOP_MHZ)
    power = static + busy * (m * K_M + c * K_C * CURVE.phi(x))
    node_of = np.arange(gpus) // GPUS_PER_NODE
    rack_of_node = np.arange(nodes) // NODES_PER_RACK
    racks = int(rack_of_node.max()) + 1
    zone_of_rack = np.arange(racks) * ZONES // racks
    setpoint = np.where(np.arange(MINUTES) < MINUTES // 2, 20.0, 22.0)[None, :] * np.ones(
        (ZONES, 1)
    )
    setpoint[1::2] = 21.0  # half the zones never move
    node_power = (
        np.add.reduceat(power, np.arange(0, gpus, GPUS_PER_NODE), axis=0)
        + 760
        + 26.4 * np.add.reduceat(busy, np.arange(0, gpus, GPUS_PER_NODE), axis=0)
    ) / 0.94
    rack_w = np.add.reduceat(node_power, np.arange(0, nodes, NODES_PER_RACK), axis=0)
    offset = rng.uniform(0, 1.5, racks)[rack_of_node] + 0.15 * (np.arange(nodes) % NODES_PER_RACK)
    inlet = (
        setpoint[zone_of_rack[rack_of_node]] + offset[:, None] + 0.04 * rack_w[rack_of_node] / 1e3
    )
    temp = inlet[node_of] + 10.0 + 0.055 * power
    zone_it = np.stack([rack_w[zone_of_rack == z].sum(axis=0) for z in range(ZONES)])
    cooling = zone_it / (4.0 * np.exp(0.035 * (setpoint - 20.0)))
    names = np.array([f"node{n:05d}" for n in range(nodes)], dtype=object)
    rack_names = np.array([f"r{r:03d}" for r in range(racks)], dtype=object)
    zone_names = np.array([f"z{z}" for z in range(ZONES)], dtype=object)
    times = START_NS + np.arange(MINUTES, dtype=np.int64) * 60 * 10**9

    def per_row(labels: np.ndarray) -> np.ndarray:
        return np.repeat(labels, MINUTES)

    gpu_index = np.array([str(i % GPUS_PER_NODE) for i in range(gpus)], dtype=object)
    gpu_series = Series(np.tile(times, gpus), {
        "host": per_row(names[node_of]), "gpu": per_row(gpu_index),
        "model": np.full(gpus * MINUTES, MODEL, dtype=object),
        "zone": per_row(zone_names[zone_of_rack[rack_of_node[node_of]]]),
        "rack": per_row(rack_names[rack_of_node[node_of]]),
    }, {
        "power_w": power.ravel(), "util_gpu_pct": 100 * busy.ravel(),
        "util_mem_pct": 100 * (busy * m).ravel(), "sm_clock_mhz": (x * TOP_MHZ).ravel(),
        "power_limit_w": limit.ravel(), "enforced_limit_w": limit.ravel(),
        "temp_c": temp.ravel(), "capped_share": ((x < 1.0) & (busy > 0)).astype(np.float64).ravel(),
        # the stores' peak and spread columns: a busy GPU's bursts and its 1 s jitter
        "power_peak_w": (power * (1.0 + 0.03 * (busy > 0))).ravel(),
        "power_sd_w": (power * 0.01).ravel(),
    })  # fmt: skip
    host_series = Series(np.tile(times, nodes), {
        "host": per_row(names), "zone": per_row(zone_names[zone_of_rack[rack_of_node]]),
        "rack": per_row(rack_names[rack_of_node]),
    }, {"inlet_temp_c": inlet.ravel(), "node_power_w": node_power.ravel()})  # fmt: skip
    zone_series = Series(np.tile(times, ZONES), {"zone": per_row(zone_names)}, {
        "setpoint_c": setpoint.ravel(), "supply_temp_c": setpoint.ravel(),
        "it_power_w": zone_it.ravel(), "cooling_power_w": cooling.ravel(),
    })  # fmt: skip
    held = (kind >= 0).ravel()
    job_series = Series(np.tile(times, gpus)[held], {
        "host": gpu_series.tags["host"][held], "gpu": gpu_series.tags["gpu"][held],
        "job": _job_names(job.ravel()[held]),
    }, {"power_w": power.ravel()[held]})  # fmt: skip
    return Fleet(gpu_series, host_series, zone_series, job_series,
                 *_states(gpu_series, host_series, zone_series, gpus, nodes))  # fmt: skip


def _job_names(numbers: np.ndarray) -> np.ndarray:
    """Job ids as a store returns tags: one string object per distinct value, shared by rows."""
    distinct, codes = np.unique(numbers, return_inverse=True)
    names = np.array([f"job-{n}" for n in distinct], dtype=object)
    return names[codes.reshape(-1)]


def _jobs(rng: np.random.Generator, gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per GPU and minute: job kind (-1 idle), duty and job number, as the twin's scheduler."""
    kind = np.full((gpus, MINUTES), -1, dtype=np.int64)
    duty = np.zeros((gpus, MINUTES))
    job = np.zeros((gpus, MINUTES), dtype=np.int64)
    now_kind = np.where(rng.random(gpus) < 0.8, rng.choice(3, gpus, p=KINDS[:, 5] / 6), -1)
    now_duty = rng.uniform(KINDS[now_kind, 2], KINDS[now_kind, 3])
    now_job, started = np.arange(gpus), gpus
    for t in range(MINUTES):
        ends = (now_kind >= 0) & (rng.random(gpus) < 1 / KINDS[now_kind, 4])
        starts = (now_kind < 0) & (rng.random(gpus) < 1 / 10)
        now_kind = np.where(ends, -1, now_kind)
        new = rng.choice(3, gpus, p=KINDS[:, 5] / 6)
        now_kind = np.where(starts, new, now_kind)
        now_duty = np.where(starts, rng.uniform(KINDS[new, 2], KINDS[new, 3]), now_duty)
        now_job = np.where(starts, started + np.cumsum(starts), now_job)
        started += int(starts.sum())
        kind[:, t], job[:, t] = now_kind, now_job
        duty[:, t] = np.clip(now_duty * (1 + 0.03 * rng.standard_normal(gpus)), 0, 1)
    return kind, duty, job


def _states(g: Series, h: Series, z: Series, gpus: int, nodes: int) -> tuple[list[Any], ...]:
    last = (np.arange(gpus) + 1) * MINUTES - 1
    v = {k: a[last] for k, a in g.values.items()}
    gpu_states = [
        GpuState(str(g.tags["host"][r]), i % GPUS_PER_NODE, "", MODEL, "c", str(g.tags["zone"][r]),
                 str(g.tags["rack"][r]), int(g.time_ns[r]), v["power_w"][i], v["temp_c"][i],
                 v["util_gpu_pct"][i], v["util_mem_pct"][i], v["sm_clock_mhz"][i],
                 v["power_limit_w"][i], v["enforced_limit_w"][i], 200.0, 700.0, 700.0, 87.0,
                 0.0, 80e9, False)
        for i, r in enumerate(last)
    ]  # fmt: skip
    hl = (np.arange(nodes) + 1) * MINUTES - 1
    host_states = [
        HostState(str(h.tags["host"][r]), "c", str(h.tags["zone"][r]), str(h.tags["rack"][r]),
                  int(h.time_ns[r]), h.values["inlet_temp_c"][r], h.values["node_power_w"][r], 30.0)
        for r in hl
    ]  # fmt: skip
    zl = (np.arange(ZONES) + 1) * MINUTES - 1
    zone_states = [
        ZoneState("c", str(z.tags["zone"][r]), int(z.time_ns[r]), z.values["supply_temp_c"][r],
                  z.values["setpoint_c"][r], float("nan"), z.values["cooling_power_w"][r],
                  z.values["it_power_w"][r])
        for r in zl
    ]  # fmt: skip
    return gpu_states, host_states, zone_states


def run(fleet: Fleet, gpus: int) -> dict[str, float]:
    times: dict[str, float] = {}
    peaks: dict[str, float] = {}
    peaks["data"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timed(name: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = call()
        times[name] = time.perf_counter() - start
        peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out

    g, h, z = fleet.gpus, fleet.hosts, fleet.zones
    timed("power", lambda: fit_power_models(g))
    cap = timed("cap_response", lambda: fit_cap_models(g))
    work = timed("workloads", lambda: estimate_workloads(g, cap))
    timed("job_profiles", lambda: job_profiles(fleet.jobs, g, cap))
    fits = timed("thermal", lambda: ThermalFits(fit_inlet_models(h, z), fit_cooling_models(z),
                                                fit_gpu_thermal(g, h)))  # fmt: skip
    curves = timed("node_curves", lambda: fit_node_power_curves(g, h))
    caps = timed("rec_caps", lambda: recommend_caps(fleet.gpu_states, work, CapSettings()))
    states = (fleet.zone_states, fleet.host_states, fleet.gpu_states)
    timed("rec_cooling", lambda: recommend_cooling(*states, CoolingSettings(), fits))
    view = timed("fleet_view", lambda: FleetView.build(
        fleet.gpu_states, fleet.host_states, fleet.zone_states, curves=curves,
        gpu_thermal=fits.gpus, inlets=fits.inlets, cooling=fits.cooling))  # fmt: skip
    request = PlacementRequest(gpus=4, expected_power_w=600.0)
    placed = timed("placement", lambda: recommend_placement(request, view, PlacementSettings()))
    assert len(caps) == gpus and placed.candidates
    print("  peak RSS after each stage (MiB):", {k: round(v) for k, v in peaks.items()}, flush=True)
    return times


def measured(gpus: int, store: TelemetryStore | None = None) -> tuple[dict[str, float], float]:
    """Stage times and peak RSS (MiB) of the refit in a forked child.

    In memory, the child is forked once the data exists: its peak counts the data it
    shares plus everything the refit allocates, and not the generator's temporaries.
    With ``store``, nothing is simulated here (the caller wrote the fleet and let go of
    it): the child's peak is what reading the store and refitting take."""
    fleet = simulate(gpus) if store is None else None
    gc.collect()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        forked_kib = _rss_kib()  # the parent's pages it shares, resident from the start
        reads: dict[str, float] = {}
        if fleet is None:
            assert store is not None
            end_ns = START_NS + MINUTES * 60 * 10**9
            fleet = Fleet(**read_fleet(store, START_NS, end_ns, reads))
        times = {**reads, **run(fleet, gpus)}
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {"times": times, "peak_kib": peak_kib, "forked_kib": forked_kib}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(child, 0)
    if store is not None:
        above_mib = (result["peak_kib"] - result["forked_kib"]) / 1024
        forked_mib = result["forked_kib"] / 1024
        print(f"  of the peak, {above_mib:.0f} MiB above the {forked_mib:.0f} MiB the child "
              "was forked with", flush=True)  # fmt: skip
    return result["times"], result["peak_kib"] / 1024


def _rss_kib() -> int:
    """This process's resident set now (ru_maxrss is the high-water mark only)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--stores", nargs="*", choices=["influx", "victoria"], default=[],
        help="write the day into these real stores and read it back (default: in memory)",
    )  # fmt: skip
    args = parser.parse_args()
    for gpus in args.gpus:
        if not args.stores:
            report(f"{gpus} GPUs × {MINUTES} min", *measured(gpus))
        for kind in args.stores:
            end_ns = START_NS + MINUTES * 60 * 10**9
            with load(kind, end_ns) as loaded:
                written = write_fleet(loaded, simulate(gpus))  # the day is freed once written
                print(f"{gpus} GPUs: {written.lines:,} lines written into {kind} in "
                      f"{written.write_s:.0f} s", flush=True)  # fmt: skip
                report(f"{gpus} GPUs × {MINUTES} min from {kind}", *measured(gpus, loaded.store))


def report(what: str, times: dict[str, float], peak_mib: float) -> None:
    stages = ", ".join(f"{k} {v:.2f}" for k, v in times.items())
    print(f"{what}: read + refit + recommendations {sum(times.values()):.1f} s, "
          f"peak RSS {peak_mib:.0f} MiB (data included)\n  {stages}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
