"""What one NVML tick costs per GPU, next to one nvidia-smi call; and whether they agree.

Run on a GPU node (after ``pip install -e .``)::

    python bench/nvml_tick.py                   # cost: 600 ticks of 1 s virtual time
    python bench/nvml_tick.py --mode agree      # probe vs nvidia-smi, on a steady load

``--fake`` runs the same code on the fake NVML (an energy-counter call then
sleeps ``--fake-energy-ms``, 3.8 ms by default as measured on an H100), so the
script itself is tested without a GPU. Ticks run back to back on a virtual
clock: the source's energy cadence sees ``--tick-s`` per tick, the bench does
not sleep. Wall time is ``time.perf_counter``, CPU time ``time.thread_time``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from wattwise.clock import ManualClock
from wattwise.collector.fake_nvml import FakeNvml
from wattwise.collector.nvml import NvmlSource, open_nvml_source
from wattwise.collector.nvml_api import FI_TOTAL_ENERGY_CONSUMPTION, TICK_FIELD_IDS, NvmlLibrary

SMI_QUERY = "index,power.draw,temperature.gpu,clocks.sm"
SMI_COST_QUERY = "power.draw,temperature.gpu,utilization.gpu,clocks.sm"
SMI_REFERENCE_MS = 30.0  # tests/data/h100/README.md, when nvidia-smi cannot run here
TARGET_RATIO = 50.0


class CountingNvml:
    """Passes every call through; counts energy-counter reads, and can make the call slow.

    The fake's delay applies to nvmlDeviceGetTotalEnergyConsumption only: what the
    field value costs on a GPU is the open question the real run answers.
    """

    def __init__(self, nvml: Any, energy_delay_s: float = 0.0) -> None:
        self._nvml = nvml
        self._energy_delay_s = energy_delay_s
        self.energy_calls = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._nvml, name)
        if name == "nvmlDeviceGetFieldValues":

            def field_values(handle: object, field_ids: Sequence[int]) -> Any:
                self.energy_calls += FI_TOTAL_ENERGY_CONSUMPTION in field_ids
                return target(handle, field_ids)

            return field_values
        if name != "nvmlDeviceGetTotalEnergyConsumption":
            return target

        def energy(handle: object) -> int:
            self.energy_calls += 1
            if self._energy_delay_s:
                time.sleep(self._energy_delay_s)
            return int(target(handle))

        return energy


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


def timed(fn: Callable[[], object]) -> Sample:
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    fn()
    return Sample(time.perf_counter() - wall0, time.thread_time() - cpu0)


def median_ms(samples: Sequence[Sample], per: int = 1) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    wall = statistics.median(s.wall_s for s in samples) * 1000 / per
    cpu = statistics.median(s.cpu_s for s in samples) * 1000 / per
    return wall, cpu


def open_library(args: argparse.Namespace) -> tuple[CountingNvml, Any]:
    if args.fake:
        fake = FakeNvml.h100s(args.gpus)
        return CountingNvml(fake, args.fake_energy_ms / 1000), fake
    import pynvml

    return CountingNvml(pynvml), pynvml


def make_source(nvml: CountingNvml, clock: ManualClock, args: argparse.Namespace) -> NvmlSource:
    return open_nvml_source(
        "bench",
        clock,
        nvml=cast(NvmlLibrary, nvml),
        energy_every_s=args.energy_every_s,
        energy_read=args.energy_read,
    )


def tick_costs(source: NvmlSource, nvml: CountingNvml, clock: ManualClock, args: Any) -> None:
    plain: list[Sample] = []
    with_energy: list[Sample] = []
    for _ in range(args.ticks):
        clock.advance(args.tick_s)
        before = nvml.energy_calls
        sample = timed(source.read)
        (with_energy if nvml.energy_calls > before else plain).append(sample)
    gpus = max(source.gpu_count, 1)
    all_ticks = plain + with_energy
    amortised_wall = sum(s.wall_s for s in all_ticks) / len(all_ticks) * 1000 / gpus
    amortised_cpu = sum(s.cpu_s for s in all_ticks) / len(all_ticks) * 1000 / gpus
    print(f"GPUs: {source.gpu_count}, ticks: {len(all_ticks)} of {args.tick_s} s, "
          f"energy every {args.energy_every_s} s via {args.energy_read}")  # fmt: skip
    print("per GPU per tick, ms (wall / cpu):")
    print("  tick without counter (median) {:.4f} / {:.4f}".format(*median_ms(plain, gpus)))
    print("whole tick with a counter read, ms (median, wall / cpu): {:.4f} / {:.4f}".format(
          *median_ms(with_energy)))  # fmt: skip
    print(f"amortised per GPU per tick, ms (mean, wall / cpu): "
          f"{amortised_wall:.4f} / {amortised_cpu:.4f}")  # fmt: skip
    smi_ms, smi_label = nvidia_smi_ms(args)
    print(f"nvidia-smi --query-gpu={SMI_COST_QUERY}: {smi_ms:.1f} ms per call ({smi_label})")
    ratio = smi_ms / amortised_wall if amortised_wall > 0 else float("inf")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"ratio nvidia-smi / amortised NVML per GPU: {ratio:.0f}x "
          f"({verdict} the {TARGET_RATIO:.0f}x target)")  # fmt: skip


def energy_api_costs(nvml: CountingNvml, lib: Any, args: argparse.Namespace) -> None:
    """The counter by its function, as a lone field value, and batched with the tick's fields."""
    handle = lib.nvmlDeviceGetHandleByIndex(0)
    lone, batched = [FI_TOTAL_ENERGY_CONSUMPTION], [*TICK_FIELD_IDS, FI_TOTAL_ENERGY_CONSUMPTION]
    cases: dict[str, Callable[[], object]] = {
        "nvmlDeviceGetTotalEnergyConsumption": lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(
            handle
        ),
        "field value TOTAL_ENERGY alone": lambda: lib.nvmlDeviceGetFieldValues(handle, lone),
        "tick field values without energy": lambda: lib.nvmlDeviceGetFieldValues(
            handle, list(TICK_FIELD_IDS)
        ),
        "tick field values with energy": lambda: lib.nvmlDeviceGetFieldValues(handle, batched),
    }
    print("energy counter, one GPU, ms per call (wall / cpu):")
    for label, fn in cases.items():
        samples = [timed(fn) for _ in range(args.calls)]
        print("  {}: {:.4f} / {:.4f}".format(label, *median_ms(samples)))


def nvidia_smi_ms(args: argparse.Namespace) -> tuple[float, str]:
    if args.fake or shutil.which("nvidia-smi") is None:
        return SMI_REFERENCE_MS, "reference from tests/data/h100/README.md, not measured here"
    command = ["nvidia-smi", f"--query-gpu={SMI_COST_QUERY}", "--format=csv"]
    samples = [timed(lambda: subprocess.run(command, capture_output=True, check=True))
               for _ in range(args.calls)]  # fmt: skip
    return median_ms(samples)[0], f"median of {args.calls} calls on this machine"


@dataclass(frozen=True)
class Probe:
    power_w: float | None
    temp_c: float | None
    sm_clock_mhz: float | None


def probe(source: NvmlSource) -> dict[int, Probe]:
    result = {}
    for r in source.read():
        if r.measurement == "gpu" and r.fields.get("failed") == 0:
            f = r.fields
            result[int(r.tags["gpu"])] = Probe(
                _num(f.get("power_w")), _num(f.get("temp_c")), _num(f.get("sm_clock_mhz"))
            )
    return result


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def parse_smi_csv(text: str) -> dict[int, Probe]:
    """Parse ``--query-gpu=<SMI_QUERY> --format=csv,noheader,nounits`` output."""
    rows = {}
    for line in text.strip().splitlines():
        index, power, temp, clock = (cell.strip() for cell in line.split(","))
        rows[int(index)] = Probe(_smi_num(power), _smi_num(temp), _smi_num(clock))
    return rows


def _smi_num(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def disagreements(ours: Probe, smi: Probe) -> list[str]:
    """Power within 5 %, temperature within 2 °C, SM clock exact."""
    problems = []
    if (
        ours.power_w is None
        or smi.power_w is None
        or abs(ours.power_w - smi.power_w) > (0.05 * smi.power_w)
    ):
        problems.append(f"power {ours.power_w} W vs {smi.power_w} W")
    if ours.temp_c is None or smi.temp_c is None or abs(ours.temp_c - smi.temp_c) > 2:
        problems.append(f"temperature {ours.temp_c} °C vs {smi.temp_c} °C")
    if ours.sm_clock_mhz != smi.sm_clock_mhz:
        problems.append(f"SM clock {ours.sm_clock_mhz} MHz vs {smi.sm_clock_mhz} MHz")
    return problems


def smi_text(args: argparse.Namespace, fake: Any) -> str:
    if args.fake:  # what nvidia-smi prints for the fake's GPUs
        return "\n".join(
            f"{i}, {g.power_mw / 1000:.2f}, {g.temp_c}, {g.sm_clock_mhz}"
            for i, g in enumerate(fake.gpus)
        )
    command = ["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def agree(source: NvmlSource, lib: Any, args: argparse.Namespace) -> int:
    """Probe, nvidia-smi, probe: a GPU agrees if either bracketing probe agrees."""
    before = probe(source)
    smi = parse_smi_csv(smi_text(args, lib))
    after = probe(source)
    failures = 0
    for index, theirs in sorted(smi.items()):
        problems = [disagreements(p[index], theirs) for p in (before, after) if index in p]
        if problems and min(problems, key=len) == []:
            print(f"gpu{index}: agree with nvidia-smi ({theirs})")
        else:
            failures += 1
            print(f"gpu{index}: DISAGREE: {'; '.join(problems[0] if problems else ['no probe'])}")
    return 1 if failures else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fake", action="store_true", help="use the fake NVML (no GPU needed)")
    parser.add_argument("--mode", choices=["cost", "agree"], default="cost")
    parser.add_argument("--ticks", type=int, default=600)
    parser.add_argument("--tick-s", type=float, default=1.0)
    parser.add_argument("--energy-every-s", type=float, default=10.0)
    parser.add_argument("--energy-read", choices=["call", "field"], default="call")
    parser.add_argument("--calls", type=int, default=20, help="samples per micro-benchmark")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the fake")
    parser.add_argument("--fake-energy-ms", type=float, default=3.8)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nvml, lib = open_library(args)
    clock = ManualClock()
    source = make_source(nvml, clock, args)
    try:
        if args.mode == "agree":
            return agree(source, lib, args)
        tick_costs(source, nvml, clock, args)
        energy_api_costs(nvml, lib, args)
        return 0
    finally:
        source.close()


if __name__ == "__main__":
    sys.exit(main())
