"""Replay the published A100 SXM clock sweep through the twin's A100 and compare the curves.

Run ``python -m wattwise.collector.sim.calibrate_sweep [FILE]``: locks one simulated A100's
SM clock at every frequency of the Perseus GPT-3 stage profile
(``tests/data/public/perseus-sosp24/stage_profile_gpt3-175b_a100_sxm_bf16.csv``, all
stages and both passes summed), runs the stage's work there and prints power, time and
energy relative to the top clock, real against simulated; exits 1 when a point is off
by more than :data:`TOLERANCE`.

The stage's work (:data:`GPT3_STAGE`) is what the twin needs to know about it: SM and
memory activity and memory-boundness, fitted with the A100's clock curve to this file.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from wattwise.clock import ManualClock
from wattwise.collector.sim.fleet import SimFleet
from wattwise.collector.sim.spec import FleetSpec, NodeSpec
from wattwise.collector.sim.thermal import AirflowParams
from wattwise.collector.sim.truths import DEFAULT_TRUTH, TRUTHS
from wattwise.collector.sim.workload import WorkloadSpec

DEFAULT_FILE = Path("tests/data/public/perseus-sosp24/stage_profile_gpt3-175b_a100_sxm_bf16.csv")
"""The sweep, from the repository's root (where the docs run this module)."""
TOLERANCE = 0.05
SETTLE_S = 20.0
MEASURE_S = 10.0
STEP_S = 0.25

GPT3_STAGE = WorkloadSpec(
    name="gpt3-175b-stage",
    compute=0.60,
    memory=0.52,
    memory_bound=0.29,
    duty_min=0.97,
    duty_max=0.97,
    mean_length_s=1e9,
    burst_enforcement=0.5,
)
"""One pipeline stage of GPT-3 175B in bf16, forward and backward passes together."""


@dataclass(frozen=True, slots=True)
class Point:
    clock_mhz: float
    real_power: float
    real_time: float
    real_energy: float
    sim_power: float
    sim_time: float
    sim_energy: float

    def errors(self) -> tuple[float, float, float]:
        return (
            self.sim_power / self.real_power - 1.0,
            self.sim_time / self.real_time - 1.0,
            self.sim_energy / self.real_energy - 1.0,
        )


def load_curve(path: Path) -> dict[float, tuple[float, float]]:
    """Frequency → (time, energy) summed over every stage and pass."""
    totals: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            total = totals[float(row["frequency"])]
            total[0] += float(row["time"])
            total[1] += float(row["energy"])
    return {mhz: (t, e) for mhz, (t, e) in totals.items()}


def simulate(
    clocks_mhz: list[float], work: WorkloadSpec = GPT3_STAGE, truth: str = DEFAULT_TRUTH
) -> list[tuple[float, float]]:
    """(mean power, work rate) of the twin's A100 running ``work`` at each locked clock."""
    clock = ManualClock()
    spec = FleetSpec(
        nodes=(NodeSpec(host="a100", cluster="lab", zone="lab", rack="lab", slot=0, gpus=1,
                        gpu_model="A100_SXM"),),
        workloads=(),
        busy_share=0.0,
        setpoint_c=25.0,
        airflow=AirflowParams(slot_rise_c=0.0, recirculation_c_per_kw=0.0, rack_offset_max_c=0.0),
        truth=truth,
    )  # fmt: skip
    fleet = SimFleet(spec, clock)
    fleet.start_job("a100", 0, work)
    out = []
    for mhz in clocks_mhz:
        fleet.lock_clock("a100", 0, mhz)
        clock.advance(SETTLE_S)
        fleet.sync()
        energy, done = fleet.energy_j[0], fleet.work[0]
        clock.advance(MEASURE_S)
        fleet.sync()
        out.append(((fleet.energy_j[0] - energy) / MEASURE_S, (fleet.work[0] - done) / MEASURE_S))
    return out


def replay(path: Path, work: WorkloadSpec = GPT3_STAGE, truth: str = DEFAULT_TRUTH) -> list[Point]:
    curve = load_curve(path)
    clocks = sorted(curve, reverse=True)
    simulated = simulate(clocks, work, truth)
    (t0, e0), (p0, r0) = curve[clocks[0]], simulated[0]
    points = []
    for mhz, (power, rate) in zip(clocks, simulated, strict=True):
        t, e = curve[mhz]
        points.append(
            Point(
                clock_mhz=mhz,
                real_power=(e / t) / (e0 / t0),
                real_time=t / t0,
                real_energy=e / e0,
                sim_power=power / p0,
                sim_time=r0 / rate,
                sim_energy=(power / rate) / (p0 / r0),
            )
        )
    return points


def table(points: list[Point]) -> str:
    lines = [
        "| SM clock (MHz) | power real / sim | time real / sim | energy real / sim | worst |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in points:
        worst = max(map(abs, p.errors()))
        mark = "" if worst <= TOLERANCE else " ✗"
        lines.append(
            f"| {p.clock_mhz:.0f} | {p.real_power:.3f} / {p.sim_power:.3f} "
            f"| {p.real_time:.3f} / {p.sim_time:.3f} | {p.real_energy:.3f} / {p.sim_energy:.3f} "
            f"| {worst:.1%}{mark} |"
        )
    return "\n".join(lines)


def worst_error(points: list[Point]) -> float:
    return max(max(map(abs, p.errors())) for p in points)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_FILE
    replayed = {truth: replay(path, truth=truth) for truth in TRUTHS}
    print(table(replayed[DEFAULT_TRUTH]))
    worst = {truth: worst_error(points) for truth, points in replayed.items()}
    for truth, error in worst.items():
        print(f"truth {truth}: worst relative error {error:.1%}")
    print(f"tolerance {TOLERANCE:.0%} on every point, every truth")
    return 0 if max(worst.values()) <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
