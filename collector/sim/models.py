"""GPU models of the simulated fleet: published limits plus calibrated power and thermal terms.

Power limits, clocks and memory sizes are the vendors' published values. The
power and thermal coefficients of the H100 come from the real telemetry in
``tests/data/h100`` (see ``docs/simulator.md`` for the derivation and
``python -m wattwise.collector.sim.calibrate`` for the check). No telemetry was
available for the A100 and the L40S, so their coefficients are scaled from the
H100 by their published board power.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from wattwise.errors import ConfigError

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuModel:
    """What the twin needs to know about one GPU product."""

    key: str
    product_name: str
    min_limit_w: float
    max_limit_w: float
    default_limit_w: float
    max_sm_clock_mhz: float
    min_sm_clock_mhz: float
    """Lowest clock the power controller drops to before it stalls the GPU."""
    idle_sm_clock_mhz: float
    mem_clock_mhz: float
    mem_total_bytes: int
    slowdown_temp_c: float
    idle_power_w: float
    """Board power with no work and clocks down, at ``leak_ref_temp_c``."""
    context_power_w: float
    """Extra power while a job holds the GPU with clocks up, even between kernels."""
    compute_power_w: float
    """Dynamic power of fully active SMs at the maximum clock (K_c)."""
    memory_power_w: float
    """Power of the memory system at full memory utilization (K_m)."""
    leak_w_per_c: float
    """Leakage rise per °C of die temperature above ``leak_ref_temp_c``."""
    leak_ref_temp_c: float
    knee_clock_rel: float
    """Relative SM clock below which the voltage stays at its floor (power ∝ clock there)."""
    knee_voltage: float
    """Voltage at and below the knee, relative to the voltage at the top clock."""
    voltage_curvature: float
    """γ in V = v_knee + (1 − v_knee)·s^γ above the knee (s: 0 at the knee, 1 at the top)."""
    roofline_sharpness: float
    """p of the kernels' time ‖((1 − μ)/x, μ)‖_p: how sharply time switches from following
    the clock to following memory."""
    r_die_c_per_w: float
    """Die-to-heatsink thermal resistance (fast path)."""
    r_sink_c_per_w: float
    """Heatsink-to-air thermal resistance (slow path)."""
    tau_die_s: float
    tau_sink_s: float
    mem_temp_offset_c: float
    mem_temp_c_per_w: float
    """HBM temperature rise per W of board power."""
    mem_temp_c_per_mem_w: float
    """Additional HBM temperature rise per W of memory power."""
    peak_tflops: float
    """Dense bf16 peak at the maximum clock, for reporting work in FLOP."""
    gpm: bool = False
    """Whether NVML's GPU Performance Monitoring reads its activities (Hopper and newer)."""

    def check_limit(self, watts: float) -> None:
        """Raise ConfigError if ``watts`` is outside the range this GPU accepts."""
        if not self.min_limit_w <= watts <= self.max_limit_w:
            raise ConfigError(
                "power_limit_w", watts, f"{self.min_limit_w:g}–{self.max_limit_w:g} W"
            )


H100_SXM = GpuModel(
    key="H100_SXM",
    product_name="NVIDIA H100 80GB HBM3",
    min_limit_w=200.0,
    max_limit_w=700.0,
    default_limit_w=700.0,
    max_sm_clock_mhz=1980.0,
    min_sm_clock_mhz=345.0,
    idle_sm_clock_mhz=345.0,
    mem_clock_mhz=2619.0,
    mem_total_bytes=81559 * 1024**2,
    slowdown_temp_c=87.0,
    idle_power_w=77.0,
    context_power_w=45.0,
    compute_power_w=782.0,
    memory_power_w=260.0,
    leak_w_per_c=0.9,
    leak_ref_temp_c=38.0,
    knee_clock_rel=0.615,
    knee_voltage=0.918,
    voltage_curvature=1.21,
    roofline_sharpness=1.77,
    r_die_c_per_w=0.032,
    r_sink_c_per_w=0.023,
    tau_die_s=1.0,
    tau_sink_s=15.0,
    mem_temp_offset_c=4.6,
    mem_temp_c_per_w=0.031,
    mem_temp_c_per_mem_w=0.069,
    peak_tflops=989.0,
    gpm=True,
)


def _scaled(base: GpuModel, board_w: float) -> GpuModel:
    """``base`` with its power terms scaled to ``board_w`` and thermals giving the same rise."""
    scale = board_w / base.max_limit_w
    return replace(
        base,
        context_power_w=base.context_power_w * scale,
        compute_power_w=base.compute_power_w * scale,
        memory_power_w=base.memory_power_w * scale,
        leak_w_per_c=base.leak_w_per_c * scale,
        r_die_c_per_w=base.r_die_c_per_w / scale,
        r_sink_c_per_w=base.r_sink_c_per_w / scale,
        mem_temp_c_per_w=base.mem_temp_c_per_w / scale,
        mem_temp_c_per_mem_w=base.mem_temp_c_per_mem_w / scale,
    )


A100_SXM = replace(
    _scaled(H100_SXM, 400.0),
    key="A100_SXM",
    product_name="NVIDIA A100-SXM4-80GB",
    min_limit_w=100.0,
    max_limit_w=400.0,
    default_limit_w=400.0,
    max_sm_clock_mhz=1410.0,
    min_sm_clock_mhz=210.0,
    idle_sm_clock_mhz=210.0,
    mem_clock_mhz=1593.0,
    mem_total_bytes=81920 * 1024**2,
    slowdown_temp_c=89.0,
    idle_power_w=55.0,
    peak_tflops=312.0,
    gpm=False,
    # Fitted to the published A100 SXM clock sweep (collector/sim/calibrate_sweep.py).
    knee_clock_rel=0.50,
    knee_voltage=0.434,
    voltage_curvature=1.93,
    roofline_sharpness=1.77,
)

L40S = replace(
    _scaled(H100_SXM, 350.0),
    key="L40S",
    product_name="NVIDIA L40S",
    min_limit_w=100.0,
    max_limit_w=350.0,
    default_limit_w=350.0,
    max_sm_clock_mhz=2520.0,
    min_sm_clock_mhz=210.0,
    idle_sm_clock_mhz=210.0,
    mem_clock_mhz=9001.0,
    mem_total_bytes=46068 * 1024**2,
    slowdown_temp_c=88.0,
    idle_power_w=35.0,
    peak_tflops=362.0,
    gpm=False,
)

GPU_MODELS: Mapping[str, GpuModel] = MappingProxyType(
    {m.key: m for m in (H100_SXM, A100_SXM, L40S)}
)
"""The models the twin knows, by key (read-only)."""


def gpu_model(key: str) -> GpuModel:
    """The model named ``key`` (``H100_SXM``, ``A100_SXM``, ``L40S``)."""
    try:
        return GPU_MODELS[key]
    except KeyError:
        raise ConfigError("gpu_model", key, ", ".join(GPU_MODELS)) from None
