"""How long ``wattwise --help`` takes: the median of 10 runs of the installed command.

Run as ``python bench/cli_help.py [--runs 10] [--baseline DIR]``. Each run is a fresh
process, as an operator typing the command gets. Measured side by side, in turn:

- ``wattwise --help`` (the console script beside this interpreter);
- ``wattwise agent --help``, which loads the agent's command module only;
- ``python -c "import typer"``, the floor: an interpreter that loads the CLI library;
- with ``--baseline DIR``, ``python -m wattwise --help`` from another checkout.

Target: ``wattwise --help`` ≤ 0.3 s (median).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3


def _wattwise() -> str:
    found = shutil.which("wattwise", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("no wattwise command beside this interpreter: pip install the package")
    return found


Case = tuple[list[str], dict[str, str], Path]
"""argv, environment, working directory."""


def _time(case: Case) -> float:
    argv, env, cwd = case
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another checkout to time beside this one")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "80"}
    cases: dict[str, Case] = {
        "wattwise --help": ([_wattwise(), "--help"], env, ROOT),
        "wattwise agent --help": ([_wattwise(), "agent", "--help"], env, ROOT),
        "python -c 'import typer' (floor)": ([sys.executable, "-c", "import typer"], env, ROOT),
    }
    if args.baseline:
        # Run inside the baseline, so that its wattwise/ comes first on sys.path.
        baseline = args.baseline.resolve()
        argv = [sys.executable, "-m", "wattwise", "--help"]
        cases["wattwise --help [baseline]"] = (argv, {**env, "PYTHONPATH": str(baseline)}, baseline)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved, so every case sees the same machine
        for name, case in cases.items():
            times[name].append(_time(case))
    print(f"{args.runs} runs each, load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':40} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, runs in times.items():
        print(f"{name:40} {statistics.median(runs):9.3f} {min(runs):7.3f} {max(runs):7.3f}")
    median_s = statistics.median(times["wattwise --help"])
    if args.baseline:
        ratio = statistics.median(times["wattwise --help [baseline]"]) / median_s
        print(f"baseline / this checkout: {ratio:.1f}×")
    verdict = "meets" if median_s <= TARGET_S else "misses"
    print(f"wattwise --help: median {median_s:.3f} s {verdict} the target of {TARGET_S} s")


if __name__ == "__main__":
    main()
