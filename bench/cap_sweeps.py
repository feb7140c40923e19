"""Predict published power-limit and clock sweeps, one workload left out at a time.

    python bench/cap_sweeps.py FILE [--json] [--slowdown-bound 0.05] [--gain-ratio 1]

FILE is a sweep in any of the three public formats (tests/data/public/README.md). Each
workload is predicted from a fit on the file's other workloads and its own mean power at
the top setting — what telemetry of an uncapped job gives — and compared with what was
measured at every setting. The cap wattwise would recommend (optimizer/recommend/gain.py: the least
energy among the settings whose cautious slowdown is within the bound and whose expected
saving pays for the expected slowdown) is compared with the slowdown measured there.
Figures are relative to the top limit or clock. Results: docs/grounding.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from wattwise.errors import ConfigError
from wattwise.optimizer.models.sweep_fit import Check, leave_one_out
from wattwise.optimizer.models.sweeps import load_sweeps
from wattwise.optimizer.recommend.gain import pick_bounded

SCORED_SLOWDOWN = 0.15
"""Points are scored where the measured slowdown is at most this (the issue's range)."""
TOLERANCE = 0.03
NOISE_HEADROOM = 0.6
"""A limit at least 1/0.6 of the work's measured draw cannot slow it: the throughput
spread at such points is the measurements' own repeatability."""


def check_json(c: Check, bound: float, gain_ratio: float) -> dict[str, Any]:
    s = c.sweep
    key = "limit_w" if s.kind == "limit" else "clock_mhz"
    points = [
        {
            key: float(setting),
            "measured": {"throughput_rel": _r(mt), "energy_rel": _r(me)},
            "predicted": {"throughput_rel": _r(pt), "energy_rel": _r(pe)},
        }
        for setting, mt, me, pt, pe in zip(
            s.settings,
            s.throughput_rel,
            s.energy_rel,
            c.typical.throughput_rel,
            c.typical.energy_rel,
            strict=True,
        )
    ]
    k = recommended(c, bound, gain_ratio)
    slowdown = 1.0 / c.cautious.throughput_rel - 1.0
    return {
        "workload": s.workload,
        "gpu": s.gpu.name,
        "points": points,
        "least_energy": {
            "measured": float(s.settings[int(np.argmin(s.energy_rel))]),
            "predicted": float(s.settings[int(np.argmin(c.typical.energy_rel))]),
        },
        "recommended": {
            key: float(s.settings[k]),
            "predicted_slowdown_pct": _r(100.0 * slowdown[k]),
            "measured_slowdown_pct": _r(100.0 * (1.0 / s.throughput_rel[k] - 1.0)),
        },
    }


def recommended(c: Check, bound: float, gain_ratio: float) -> int:
    """The setting wattwise's rule picks (optimizer/recommend/gain.py), the top one when none
    passes."""
    k = pick_bounded(
        1.0 / c.typical.throughput_rel - 1.0,
        1.0 - c.typical.energy_rel,
        1.0 / c.cautious.throughput_rel - 1.0,
        slowdown_bound=bound,
        gain_ratio=gain_ratio,
    )
    return max(int(k), 0)


def summary(checks: list[Check], rows: list[dict[str, Any]]) -> dict[str, Any]:
    thr_err: list[float] = []
    energy_err: list[float] = []
    noise: list[float] = []
    excess: list[float] = []
    within_step: list[bool] = []
    for c in checks:
        s = c.sweep
        scored = s.throughput_rel >= 1.0 / (1.0 + SCORED_SLOWDOWN)
        thr_err += np.abs(c.typical.throughput_rel - s.throughput_rel)[scored].tolist()
        energy_err += np.abs(c.typical.energy_rel - s.energy_rel)[scored].tolist()
        step = float(np.min(np.abs(np.diff(s.settings)))) if s.settings.size > 1 else 0.0
        measured = s.settings[int(np.argmin(s.energy_rel))]
        predicted = s.settings[int(np.argmin(c.typical.energy_rel))]
        within_step.append(abs(measured - predicted) <= step + 1e-9)
        # What choosing the predicted least-energy setting costs against the measured one.
        excess.append(
            float(s.energy_rel[int(np.argmin(c.typical.energy_rel))] / s.energy_rel.min())
        )
        if s.kind == "limit" and s.stage_limits_w is None:
            drawn = s.energy_j / s.time_s / s.gpus
            free = drawn <= NOISE_HEADROOM * s.settings
            noise += (s.throughput_rel[free] - 1.0)[1:].tolist() if free[0] else []
    under = [
        r["recommended"]["measured_slowdown_pct"] - r["recommended"]["predicted_slowdown_pct"]
        for r in rows
    ]
    thr, energy = np.array(thr_err), np.array(energy_err)
    return {
        "workloads": len(checks),
        "points_scored": int(thr.size),
        "throughput_within_3pts_share": _r(float(np.mean(thr <= TOLERANCE))),
        "energy_within_3pts_share": _r(float(np.mean(energy <= TOLERANCE))),
        "throughput_max_error_pts": _r(100.0 * float(thr.max())),
        "energy_max_error_pts": _r(100.0 * float(energy.max())),
        "least_energy_within_one_step_share": _r(float(np.mean(within_step))),
        "least_energy_max_excess_pct": _r(100.0 * (max(excess) - 1.0)),
        "recommended_slowdown_max_underprediction_pts": _r(max(under)),
        "repeatability_std_pts": _r(100.0 * float(np.std(noise))) if len(noise) > 2 else None,
    }


def _r(value: float) -> float:
    return round(float(value), 4)


def table(rows: list[dict[str, Any]], totals: dict[str, Any]) -> str:
    lines = []
    for row in rows:
        key = "limit_w" if "limit_w" in row["points"][0] else "clock_mhz"
        unit = "W" if key == "limit_w" else "MHz"
        lines.append(f"\n{row['workload']} ({row['gpu']})")
        lines.append(f"  {unit:>6}  thr meas / pred   energy meas / pred")
        for p in row["points"]:
            m, q = p["measured"], p["predicted"]
            lines.append(
                f"  {p[key]:6.0f}  {m['throughput_rel']:.3f} / {q['throughput_rel']:.3f}"
                f"      {m['energy_rel']:.3f} / {q['energy_rel']:.3f}"
            )
        rec, least = row["recommended"], row["least_energy"]
        lines.append(
            f"  least energy at {least['measured']:.0f} (predicted {least['predicted']:.0f}); "
            f"cap {rec[key]:.0f}: slowdown predicted {rec['predicted_slowdown_pct']:.1f} %, "
            f"measured {rec['measured_slowdown_pct']:.1f} %"
        )
    lines.append("\nsummary: " + json.dumps(totals))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("file", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--slowdown-bound", type=float, default=0.05)
    parser.add_argument("--gain-ratio", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        sweeps = load_sweeps(args.file)
    except ConfigError as e:
        print(f"cap_sweeps: {e}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        print(f"\rfitting without each workload: {done}/{total}", end="", file=sys.stderr)

    checks = leave_one_out(sweeps, progress)
    print(file=sys.stderr)
    rows = [check_json(c, args.slowdown_bound, args.gain_ratio) for c in checks]
    totals = summary(checks, rows)
    if args.json:
        print(json.dumps({"file": args.file.name, "workloads": rows, "summary": totals}, indent=1))
    else:
        print(table(rows, totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
