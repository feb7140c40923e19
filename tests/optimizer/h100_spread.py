"""Second-to-second spread of the real H100's power per phase (bench/power_spread.py)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SETTLE_S = 2.0
"""A phase's first seconds hold the previous phase in NVML's 1 s trailing average."""


@dataclass(frozen=True)
class PhaseSpread:
    phase: str
    seconds: int
    mean_w: float
    cv: float
    p99_excess: float
    """How far the 99th percentile of the phase's seconds lies above their mean, relative."""


def phase_spreads(path: Path) -> list[PhaseSpread]:
    """One row per phase with at least 4 seconds after it settled, in file order."""
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["power_w"]:
                rows[row["phase"]].append((float(row["t"]), float(row["power_w"])))
    out = []
    for phase, samples in rows.items():
        values = np.array(samples)
        settled = values[values[:, 0] > values[:, 0].min() + SETTLE_S]
        seconds = settled[::10, 1]  # 10 Hz rows: NVML's 1 s average, once a second
        if seconds.size < 4:
            continue
        mean = float(seconds.mean())
        out.append(
            PhaseSpread(
                phase,
                int(seconds.size),
                mean,
                float(seconds.std() / mean),
                float((np.quantile(seconds, 0.99) - mean) / mean),
            )
        )
    return out
