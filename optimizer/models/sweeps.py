"""Published power-limit and clock sweeps, read into one shape for fitting and checking.

Three formats are read (``tests/data/public/README.md`` says where each comes from):

- **Zeus NSDI'23 power traces** (``summary_power_<gpu>.csv``): one row per training job
  (dataset, network, batch size, optimizer) and power limit; time per epoch and mean
  board power.
- **Perseus SOSP'24 power-limit sweeps** of 4-stage pipelines on A100 PCIe: *global*
  (every stage at the same limit) and *local* (each stage at its own limit), iteration
  time and the four GPUs' energy.
- **Perseus stage clock profiles**: one pipeline stage's forward and backward passes with
  the SM clock locked at each frequency; time and that GPU's energy.

Every workload becomes a :class:`Sweep`: its settings from the top down (limits in W or
clocks in MHz), time and energy per unit of work at each, and, for pipelines, each
stage's limit. A file whose GPU cannot be told from its name is refused.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from wattwise.errors import ConfigError
from wattwise.optimizer.telemetry import Floats

Kind = Literal["limit", "clock"]


@dataclass(frozen=True)
class GpuSpec:
    """What a sweep's GPU is, from its vendor's published figures."""

    name: str
    max_limit_w: float
    min_limit_w: float
    max_clock_mhz: float
    min_clock_mhz: float


GPU_SPECS = {
    "v100": GpuSpec("Tesla V100 PCIe", 250.0, 100.0, 1380.0, 135.0),
    "p100": GpuSpec("Tesla P100 PCIe", 250.0, 125.0, 1328.0, 544.0),
    "a40": GpuSpec("A40", 300.0, 100.0, 1740.0, 210.0),
    "a100_pcie": GpuSpec("A100 80GB PCIe", 300.0, 150.0, 1410.0, 210.0),
    # The profiled SXM board drew 476 W at 1410 MHz, above the 400 W board: a 500 W variant.
    "a100_sxm": GpuSpec("A100 80GB SXM", 500.0, 100.0, 1410.0, 210.0),
}
"""Matched against the file name (lower case, ``-`` as ``_``)."""


@dataclass(frozen=True)
class Sweep:
    """One workload measured at every setting of one sweep, top setting first."""

    gpu: GpuSpec
    workload: str
    kind: Kind
    family: str
    """What kind of work it is (the network, the model, the pass): workloads of one family
    are the same kernels at another batch size or optimizer, as one job class is in a fleet."""
    settings: Floats
    """Power limit (W) or locked SM clock (MHz) of each point, descending."""
    time_s: Floats
    """Time per unit of work (an epoch, an iteration, a pass)."""
    energy_j: Floats
    """Energy per unit of work of all ``gpus`` GPUs."""
    gpus: int = 1
    stage_limits_w: Floats | None = None
    """Pipelines: each stage's limit at each point (points × stages); ``settings`` is then
    the heaviest stage's."""

    @property
    def throughput_rel(self) -> Floats:
        return np.asarray(self.time_s[0] / self.time_s, dtype=np.float64)

    @property
    def energy_rel(self) -> Floats:
        return np.asarray(self.energy_j / self.energy_j[0], dtype=np.float64)

    @property
    def mean_power_w(self) -> float:
        """Mean power of one GPU at the top setting."""
        return float(self.energy_j[0] / self.time_s[0] / self.gpus)


def gpu_of(path: Path) -> GpuSpec:
    name = path.name.lower().replace("-", "_")
    for key, spec in GPU_SPECS.items():
        if key in name:
            return spec
    raise ConfigError("sweep file", path.name, "a name that says its GPU: " + ", ".join(GPU_SPECS))


def load_sweeps(path: Path) -> list[Sweep]:
    """Every workload of a sweep file in any of the three formats."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError("sweep file", str(path), f"a readable CSV file ({e})") from e
    columns = set(rows[0]) if rows else set()
    gpu = gpu_of(path)
    if "time_per_epoch" in columns:
        return _zeus(rows, gpu)
    if "frequency" in columns:
        return _stage_profile(rows, gpu)
    if "power_limit_0" in columns:
        return _pipeline(rows, gpu, local="heaviest_stage" in columns)
    raise ConfigError(
        "sweep file",
        path.name,
        "a Zeus power trace, a Perseus global/local sweep or a "
        "Perseus stage clock profile (see tests/data/public/README.md)",
    )


def _sweep(
    gpu: GpuSpec,
    workload: str,
    family: str,
    kind: Kind,
    points: list[tuple[float, ...]],
    gpus: int = 1,
) -> Sweep:
    """Points as (setting, time, energy, *stage limits), ordered top setting first."""
    points = sorted(points, key=lambda p: (-p[0], *(-v for v in p[3:])))
    table = np.array(points, dtype=np.float64)
    return Sweep(
        gpu=gpu,
        workload=workload,
        family=family,
        kind=kind,
        settings=table[:, 0],
        time_s=table[:, 1],
        energy_j=table[:, 2],
        gpus=gpus,
        stage_limits_w=table[:, 3:] if table.shape[1] > 3 else None,
    )


def _zeus(rows: list[dict[str, str]], gpu: GpuSpec) -> list[Sweep]:
    by_job: dict[tuple[str, str], list[tuple[float, ...]]] = defaultdict(list)
    for r in rows:
        job = f"{r['dataset']}/{r['network']} bs{r['batch_size']} {r['optimizer']}"
        seconds = float(r["time_per_epoch"])
        point = (float(r["power_limit"]), seconds, seconds * float(r["average_power"]))
        by_job[(job, r["network"])].append(point)
    return [_sweep(gpu, job, net, "limit", points) for (job, net), points in by_job.items()]


def _pipeline(rows: list[dict[str, str]], gpu: GpuSpec, *, local: bool) -> list[Sweep]:
    by_job: dict[tuple[str, str], list[tuple[float, ...]]] = defaultdict(list)
    for r in rows:
        stages = tuple(float(r[f"power_limit_{i}"]) for i in range(4))
        if local:
            job = f"{r['model_name']} stage {r['heaviest_stage']}"
            setting = float(r["heaviest_stage_power_limit"])
        else:
            job, setting = r["model_name"], stages[0]
        point = (setting, float(r["time"]), float(r["energy"]), *stages)
        by_job[(job, r["model_name"])].append(point)
    return [
        _sweep(gpu, job, model, "limit", points, gpus=4) for (job, model), points in by_job.items()
    ]


def _stage_profile(rows: list[dict[str, str]], gpu: GpuSpec) -> list[Sweep]:
    by_pass: dict[tuple[str, str], list[tuple[float, ...]]] = defaultdict(list)
    for r in rows:
        job = f"stage {r['stage']} {r['instruction']}"
        point = (float(r["frequency"]), float(r["time"]), float(r["energy"]))
        by_pass[(job, r["instruction"])].append(point)
    return [_sweep(gpu, job, what, "clock", points) for (job, what), points in by_pass.items()]
