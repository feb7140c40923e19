"""Physical ranges: what no instrument reads and no prediction may say.

Generous on purpose: they catch junk (a sensor reporting 1e30, a counter read
as a signed overflow), never an unusual but real value. The telemetry the
optimizer reads is checked against them where it enters
(:mod:`wattwise.optimizer.store.sanity`), and every number a recommendation
publishes before it is published (:mod:`wattwise.optimizer.service.published`).
"""

from __future__ import annotations

import math

Range = tuple[float, float]

GPU_POWER_W: Range = (0.0, 5_000.0)
"""One accelerator board (the largest draw ~1.2 kW), its limits and a job's share of it."""
NODE_POWER_W: Range = (0.0, 200_000.0)
"""One node, a rack-scale one included (an NVL72 rack draws ~130 kW)."""
FACILITY_POWER_W: Range = (0.0, 1e9)
"""A cooling plant or a zone's IT load."""
PERCENT: Range = (0.0, 100.0)
SHARE: Range = (0.0, 1.0)
CLOCK_MHZ: Range = (0.0, 10_000.0)
CHIP_TEMP_C: Range = (-40.0, 150.0)
AIR_TEMP_C: Range = (-20.0, 80.0)
"""Inlet air: far beyond any data hall, short of a fire."""
COOLANT_TEMP_C: Range = (-20.0, 100.0)
"""Supply, return and setpoint of air or liquid cooling."""
MEMORY_BYTES: Range = (0.0, 1e13)
ENERGY_J: Range = (0.0, 1e12)
EVENTS: Range = (0.0, 1e9)
"""Events of one kind in one bucket (XIDs): a storm, not a billion."""
TEMP_DIFFERENCE_C: Range = (-200.0, 200.0)


def within(value: float, bounds: Range) -> bool:
    """True for a finite value inside ``bounds`` (NaN and infinities are outside)."""
    low, high = bounds
    return math.isfinite(value) and low <= value <= high


def symmetric(bounds: Range) -> Range:
    """``bounds`` widened to a change either way (a saving may be negative)."""
    return (-bounds[1], bounds[1])
