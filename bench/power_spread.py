"""How much a steady job's power moves from one second to the next, on the real H100.

Run as ``.venv/bin/python bench/power_spread.py [FILE]`` (default
``tests/data/h100/h100_telemetry_10hz.csv``). For each phase, after its first two
seconds, NVML's 1 s power is taken once a second (every tenth 10 Hz row); printed are
its mean, its coefficient of variation and how far its 99th percentile lies above the
mean. The budget planner's reserve assumes a job's second-to-second spread
(``PEAK_SPREAD`` in ``optimizer/recommend/budget_draw.py``); docs/grounding.md compares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.optimizer.h100_spread import phase_spreads
from wattwise.optimizer.recommend.budget_draw import PEAK_SPREAD

DEFAULT = Path(__file__).resolve().parents[1] / "tests/data/h100/h100_telemetry_10hz.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT, help="10 Hz telemetry CSV")
    path = parser.parse_args().file
    print(f"{'phase':<28} {'seconds':>7} {'mean W':>8} {'CV':>7} {'p99 over mean':>14}")
    for s in phase_spreads(path):
        print(
            f"{s.phase:<28} {s.seconds:7d} {s.mean_w:8.1f} {100 * s.cv:6.2f}% "
            f"{100 * s.p99_excess:13.2f}%"
        )
    print(f"\nthe planner's assumed spread: {100 * PEAK_SPREAD:g} % (one standard deviation)")


if __name__ == "__main__":
    main()
