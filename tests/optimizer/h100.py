"""The real H100 telemetry as the optimizer sees it: a ``gpu_series`` frame of 1 s means."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from wattwise.optimizer.telemetry import Series

DATA = Path(__file__).resolve().parent.parent / "data" / "h100" / "h100_telemetry_10hz.csv"
MODEL = "NVIDIA H100 80GB HBM3"
REASON_SW_POWER_CAP = 0x4


def h100_series(bucket_s: float = 1.0) -> tuple[Series, np.ndarray]:
    """The 10 Hz file averaged into ``bucket_s`` buckets, and each bucket's phase name."""
    with DATA.open() as f:
        rows = list(csv.DictReader(f))
    t = np.array([float(r["t"]) for r in rows])
    bucket = np.floor(t / bucket_s).astype(np.int64)
    _, index, inverse = np.unique(bucket, return_index=True, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)

    def mean(name: str) -> np.ndarray:
        values = np.array([float(r[name]) for r in rows])
        return np.bincount(inverse, weights=values) / counts

    reasons = np.array([int(r["clock_event_reasons"]) for r in rows])
    capped = np.bincount(inverse, weights=(reasons & REASON_SW_POWER_CAP) > 0) / counts
    phases = np.array([rows[i]["phase"] for i in index], dtype=object)
    n = index.size
    series = Series(
        time_ns=(np.unique(bucket) * bucket_s * 1e9).astype(np.int64),
        tags={
            "host": np.full(n, "h100-node", dtype=object),
            "gpu": np.full(n, "0", dtype=object),
            "model": np.full(n, MODEL, dtype=object),
        },
        values={
            "power_w": mean("power_w"),
            "util_gpu_pct": mean("util_gpu"),
            "util_mem_pct": mean("util_mem"),
            "sm_clock_mhz": mean("sm_mhz"),
            "mem_clock_mhz": mean("mem_mhz"),
            "power_limit_w": mean("limit_w"),
            "enforced_limit_w": mean("limit_w"),
            "temp_c": mean("temp_c"),
            "capped_share": capped,
        },
    )
    return series, phases
