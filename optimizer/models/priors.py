"""Per GPU model constants the telemetry cannot separate, with where each comes from.

Passive telemetry sees total power, never its split into static, leakage, memory and
clock-dependent parts, nor how power falls with the clock above today's clock:

- **Static, context, leakage and memory power** of the H100 were measured on the real
  H100 in ``tests/data/h100`` (idle, the cooldown with clocks up, the 1 GiB copy); the
  A100 and L40S values are the H100's scaled by board power, with published clocks and
  limits.
- **The clock–power curve** (:class:`~.limit_response.ClockCurve`: the voltage knee and
  the voltage below it), a typical one and a cautious (flatter) one, under which a limit
  costs more clock:

  - H100: fitted by :mod:`.curve_fit` to the real H100's 8192² matmul at five duty
    cycles, held at five clocks (``tests/data/h100``): typical knee 0.49, voltage 0.92
    (power ∝ f^1.3 near the top clock); cautious, the flattest curve that fits almost
    as well, knee 0.51, voltage 0.98.
  - A100: typical fitted by :mod:`.sweep_fit` to the published A100 SXM clock sweep
    (knee 0.76, voltage 0.68); cautious from the A100 PCIe power-limit sweeps (knee 0.64,
    voltage 0.70), the flatter of the two published A100 fits; both under this prior's
    split of static and clock-dependent power (:data:`A100_STATIC_SHARE`).
  - L40S, which has no published sweep: typical, the A40's clock sweep (the nearest
    measured part: a 300 W PCIe board of the generation before, knee 0.64, voltage
    0.79, same split; its GPT-3 stages were held at its 300 W limit at the top clocks,
    which the fit knows); cautious, the flattest curve any measured GPU shows (the H100's
    cautious one), since nothing bounds how flat its own is.

  ``tests/optimizer/models/test_priors.py`` refits the data and holds these numbers to it.
  The published A100 shape is far steeper than what the H100 shows: a prior taken from
  one GPU for another under-predicts what caps cost.

None of this is the fleet twin's: the twin's curve has another form, and its parameters
are calibrated separately (``docs/simulator.md``), in several truths.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wattwise.optimizer.models.limit_response import ClockCurve

A100_CURVE = (0.76, 0.68)
A100_CAUTIOUS_CURVE = (0.64, 0.70)
A40_CURVE = (0.64, 0.79)
A100_STATIC_SHARE = 0.3
"""The A100's power that does not scale with the clock, as a share of the swept board's
top limit, under which its curves are fitted: this prior's idle and context power and
half its memory power (a training stage's memory activity). Total power never shows
the split; fitted free, the sweeps put a fifth as much there and a steeper curve under
it, which does not match what the cap response takes as static."""


@dataclass(frozen=True)
class CapPrior:
    """Static and memory power, leakage, the clock–power curve and clocks of one GPU model."""

    static_w: float
    """Idle plus context power with a job resident, at ``leak_ref_temp_c``: what the GPU draws
    between kernels."""
    leak_w_per_c: float
    leak_ref_temp_c: float
    memory_w: float
    """Memory power while kernels run at 100 % memory activity (it does not scale with the
    SM clock)."""
    top_clock_mhz: float
    min_clock_mhz: float
    compute_w: float = 727.0
    """Clock-dependent power at the top clock with every SM active (the H100's): divides a
    work's clock-dependent power into its SM activity."""
    knee_clock_rel: float = A100_CURVE[0]
    knee_voltage: float = A100_CURVE[1]
    cautious_knee_clock_rel: float = A100_CAUTIOUS_CURVE[0]
    cautious_knee_voltage: float = A100_CAUTIOUS_CURVE[1]

    @property
    def curve(self) -> ClockCurve:
        return ClockCurve(self.knee_clock_rel, self.knee_voltage)

    @property
    def cautious_curve(self) -> ClockCurve:
        return ClockCurve(self.cautious_knee_clock_rel, self.cautious_knee_voltage)


H100 = CapPrior(
    static_w=77.0 + 46.0,
    leak_w_per_c=0.9,
    leak_ref_temp_c=38.0,
    memory_w=263.0,
    top_clock_mhz=1980.0,
    min_clock_mhz=345.0,
    compute_w=727.0,
    knee_clock_rel=0.49,
    knee_voltage=0.92,
    cautious_knee_clock_rel=0.51,
    cautious_knee_voltage=0.98,
)


def _scaled(
    board_w: float,
    idle_w: float,
    top_mhz: float,
    min_mhz: float,
    curve: tuple[float, float],
    cautious: tuple[float, float],
) -> CapPrior:
    s = board_w / 700.0
    return replace(
        H100,
        static_w=idle_w + 46.0 * s,
        leak_w_per_c=H100.leak_w_per_c * s,
        memory_w=H100.memory_w * s,
        compute_w=H100.compute_w * s,
        top_clock_mhz=top_mhz,
        min_clock_mhz=min_mhz,
        knee_clock_rel=curve[0],
        knee_voltage=curve[1],
        cautious_knee_clock_rel=cautious[0],
        cautious_knee_voltage=cautious[1],
    )


FLATTEST_MEASURED = (H100.cautious_knee_clock_rel, H100.cautious_knee_voltage)
"""The cautious curve of a GPU without its own data: the flattest any measured GPU shows."""


PRIORS: tuple[tuple[str, CapPrior], ...] = (
    ("H100", H100),
    ("A100", _scaled(400.0, 55.0, 1410.0, 210.0, A100_CURVE, A100_CAUTIOUS_CURVE)),
    ("L40S", _scaled(350.0, 35.0, 2520.0, 210.0, A40_CURVE, FLATTEST_MEASURED)),
)
"""Matched by substring of the product name NVML reports (``NVIDIA H100 80GB HBM3``)."""


def prior_for(gpu_model: str) -> CapPrior | None:
    """The constants for a product name, or None when wattwise has none for it."""
    for key, prior in PRIORS:
        if key in gpu_model:
            return prior
    return None
