"""The GPU power model on the real H100, leave one phase out: a table per phase.

Run as ``.venv/bin/python bench/power_model.py [--json]``. For each phase of
``tests/data/h100`` in turn, the power model and its two baselines (a line in
utilization; gradient boosting on utilization, memory utilization, SM clock and
temperature) are fitted on 1 s buckets of every other phase and predict that phase's
10 s buckets (each phase cut on its own, after its first second: ``power_w`` is a 1 s
trailing average). Twice: with what NVML gives, and with an SM activity derived from
each matmul's tile count as a STAND-IN for GPM (``tests/optimizer/h100.py``), reported
separately. Prints each phase's mean error and the MAPE and MAE over all buckets, with
the targets of docs/grounding.md. ``--without PHASE`` leaves a phase out of the file
altogether (to see what one phase does to the fit of the others).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.optimizer.h100 import FIT_EVERY_S, SCORE_EVERY_S, PhaseCheck, h100_power_check

OVERALL_MAPE_PCT = 10.0
BUSY_PHASE_PCT = 15.0


def _targets(check: PhaseCheck) -> dict[str, bool]:
    model = check.errors["model"]
    busy = [abs(e) for e, b in zip(check.phase_error("model"), check.busy, strict=True) if b]
    return {
        f"overall MAPE <= {OVERALL_MAPE_PCT:g} %": model["mape_pct"] <= OVERALL_MAPE_PCT,
        f"every busy phase within {BUSY_PHASE_PCT:g} %": 100.0 * max(busy) <= BUSY_PHASE_PCT,
        "better than gradient boosting (MAPE and MAE)": all(
            model[k] < check.errors["boosting"][k] for k in ("mape_pct", "mae_w")
        ),
    }


def table(nvml: PhaseCheck, sm: PhaseCheck) -> str:
    lines = [
        "| phase | measured (W) | NVML only (W) | err | + SM stand-in (W) | err "
        "| utilization only | gradient boosting |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = zip(
        nvml.phases,
        nvml.measured_w,
        nvml.predicted_w["model"],
        nvml.phase_error("model"),
        sm.predicted_w["model"],
        sm.phase_error("model"),
        nvml.phase_error("util_only"),
        nvml.phase_error("boosting"),
        strict=True,
    )
    for phase, measured, p_nvml, e_nvml, p_sm, e_sm, e_util, e_boost in rows:
        lines.append(
            f"| {phase} | {measured:.0f} | {p_nvml:.0f} | {e_nvml:+.0%} | {p_sm:.0f} "
            f"| {e_sm:+.0%} | {e_util:+.0%} | {e_boost:+.0%} |"
        )
    for label, key, unit in (("MAPE, all buckets", "mape_pct", "%"), ("MAE", "mae_w", "W")):
        values = [
            nvml.errors["model"][key],
            sm.errors["model"][key],
            nvml.errors["util_only"][key],
            nvml.errors["boosting"][key],
        ]
        a, b, c, d = (f"{v:.1f} {unit}" for v in values)
        lines.append(f"| **{label}** | | | {a} | | {b} | {c} | {d} |")
    return "\n".join(lines)


def as_json(nvml: PhaseCheck, sm: PhaseCheck) -> dict[str, object]:
    def one(check: PhaseCheck) -> dict[str, object]:
        return {
            "errors": check.errors,
            "targets": _targets(check),
            "phases": [
                {
                    "phase": phase,
                    "busy": busy,
                    "measured_w": measured,
                    "predicted_w": {k: v[i] for k, v in check.predicted_w.items()},
                }
                for i, (phase, busy, measured) in enumerate(
                    zip(check.phases, check.busy, check.measured_w, strict=True)
                )
            ],
        }

    return {
        "fit_every_s": FIT_EVERY_S,
        "score_every_s": SCORE_EVERY_S,
        "buckets": nvml.buckets,
        "nvml_only": one(nvml),
        "with_sm_activity_stand_in": one(sm),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.add_argument(
        "--without", action="append", default=[], metavar="PHASE",
        help="leave this phase out of the file altogether (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    without = tuple(args.without)
    nvml = h100_power_check(sm_stand_in=False, without=without)
    sm = h100_power_check(sm_stand_in=True, without=without)
    if args.json:
        print(json.dumps(as_json(nvml, sm), indent=2))
        return 0
    print(
        f"H100, leave one phase out: fitted on {FIT_EVERY_S:g} s buckets of the other phases, "
        f"scored on {nvml.buckets} buckets of {SCORE_EVERY_S:g} s\n"
    )
    print(table(nvml, sm))
    for label, check in (("NVML only", nvml), ("with SM activity stand-in", sm)):
        met = ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in _targets(check).items())
        print(f"\n{label}: {met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
