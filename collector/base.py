"""The one interface every source implements, and the reading it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

FieldValue = float | int | bool | str
"""What a field may hold. ``None`` in a reading's fields means *missing*."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one measurement, stamped when it was read.

    ``fields`` maps a field name to its value, or to ``None`` when the value
    could not be read (unsupported by the device, sensor disabled, read
    failed): missing is never written as zero.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue | None]
    time_ns: int

    def present_fields(self) -> dict[str, FieldValue]:
        """The fields that have a value."""
        return {k: v for k, v in self.fields.items() if v is not None}


@runtime_checkable
class Source(Protocol):
    """A hardware (or simulated) source, read once per tick.

    ``read`` never raises for one failed device: it marks that device's values
    missing (and sets the ``failed`` field where the schema has one) and
    returns the rest. It raises :class:`~wattwise.errors.SourceUnavailable`
    only when nothing at all can be read.
    """

    name: str

    def read(self) -> Sequence[Reading]:
        """Read every device of this source once."""
        ...

    def close(self) -> None:
        """Release the library or connection the source holds."""
        ...


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field of the schema: its line-protocol type, unit and meaning.

    ``counter`` is set on fields that hold an increase since the previous sample
    (``energy_j``): the Prometheus export adds them up into the counter
    ``<measurement>_<counter>_total`` instead of exposing one interval's increase.
    """

    kind: type[float] | type[int] | type[str]
    unit: str
    meaning: str
    counter: str = ""


@dataclass(frozen=True, slots=True)
class MeasurementSpec:
    """A measurement of the schema: its tags and fields."""

    tags: Mapping[str, str]
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
