"""Heat: GPU die and heatsink temperatures, node inlet air, and the cooling of each zone.

Every first-order lag is advanced with its exact exponential solution, so a
step of any length is stable; the fleet still sub-steps so that power, which
depends on temperature through leakage, follows the temperature closely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.collector.sim.dvfs import Floats, GpuParams

GPU_AIR_PREHEAT_C = 10.0
"""Air reaching a GPU heatsink is warmer than the node inlet: CPUs, NICs, PSUs and
upstream GPUs of the tray heat it first. 10 °C makes the H100's idle temperature
(38 °C at 77 W) match the data for a 25 °C inlet."""


def relax(value: Floats, target: Floats, dt_s: float, tau_s: Floats | float) -> Floats:
    """Exact step of ``d value/dt = (target − value)/tau`` over ``dt_s``."""
    return target + (value - target) * np.exp(-dt_s / np.asarray(tau_s))


@dataclass(slots=True)
class GpuTemps:
    """Temperatures of every GPU: die (fast), heatsink (slow) and HBM."""

    die_c: Floats
    sink_c: Floats
    mem_c: Floats

    @classmethod
    def settled(cls, p: GpuParams, air_c: Floats, power_w: Floats) -> GpuTemps:
        """Steady state at constant ``power_w`` and air temperature."""
        sink = air_c + p.r_sink_c_per_w * power_w
        mem = air_c + p.mem_temp_offset_c + p.mem_temp_c_per_w * power_w
        return cls(die_c=sink + p.r_die_c_per_w * power_w, sink_c=sink, mem_c=mem)

    def step(
        self, p: GpuParams, air_c: Floats, power_w: Floats, memory_w: Floats, dt_s: float
    ) -> None:
        """Advance by ``dt_s`` at constant power (two time constants: sink slow, die fast)."""
        self.sink_c = relax(self.sink_c, air_c + p.r_sink_c_per_w * power_w, dt_s, p.tau_sink_s)
        self.die_c = relax(self.die_c, self.sink_c + p.r_die_c_per_w * power_w, dt_s, p.tau_die_s)
        mem_target = (
            air_c
            + p.mem_temp_offset_c
            + p.mem_temp_c_per_w * power_w
            + p.mem_temp_c_per_mem_w * memory_w
        )
        self.mem_c = relax(self.mem_c, mem_target, dt_s, p.tau_sink_s)


@dataclass(frozen=True, slots=True)
class AirflowParams:
    """How the supply air of a zone becomes the inlet air of each node."""

    slot_rise_c: float = 0.15
    """Warmer inlet per node slot up the rack (hot air rises and recirculates over the top)."""
    recirculation_c_per_kw: float = 0.04
    """Inlet rise per kW of rack power from hot exhaust recirculating to the front."""
    edge_recirculation_factor: float = 2.0
    """Racks at the ends of a row recirculate this many times more (open aisle ends)."""
    rack_offset_max_c: float = 1.5
    """Largest fixed inlet offset of a rack from its place on the floor (drawn by seed)."""


@dataclass(frozen=True, slots=True)
class CoolingParams:
    """The cooling plant of a zone: supply-air lag, return air, efficiency."""

    supply_tau_s: float = 60.0
    """How fast the supply temperature follows a new setpoint."""
    design_delta_c: float = 12.0
    """Supply-to-return rise at the zone's design IT load."""
    cop_at_ref: float = 4.0
    """Coefficient of performance (heat removed per W of cooling power) at ``ref_supply_c``."""
    ref_supply_c: float = 20.0
    cop_gain_per_c: float = 0.035
    """COP grows about 3.5 % per °C of supply temperature (2–5 % in the literature)."""
    fan_w_at_25c: float = 150.0
    """Server fan power per node at a 25 °C inlet; rises with the cube of (inlet − 15 °C)."""
    fan_full_speed_inlet_c: float = 40.0
    """Inlet at which server fans reach full speed (the top of ASHRAE A3's allowable inlet
    range); hotter air cannot make them spin faster, so fan power stops rising there
    (2.3 kW per node with the defaults)."""


def coefficient_of_performance(c: CoolingParams, supply_c: Floats) -> Floats:
    """Heat removed per W of cooling power at the given supply temperatures."""
    return c.cop_at_ref * np.exp(c.cop_gain_per_c * (supply_c - c.ref_supply_c))


def fan_power_w(c: CoolingParams, inlet_c: Floats) -> Floats:
    """Server fan power, which rises steeply as the inlet warms (fan laws: cube of speed)
    up to the fans' full speed."""
    # The full-speed bound is what keeps the loop fan power → rack power → recirculation →
    # inlet finite: in dense racks its gain exceeds 1, and an unbounded cube ran to inf/NaN.
    speed = np.clip(inlet_c - 15.0, 3.0, c.fan_full_speed_inlet_c - 15.0) / 10.0
    return c.fan_w_at_25c * speed**3
