"""Where delivered lines end up: one small interface, several implementations.

The sender hands a transport a batch of line-protocol lines; the transport
either stores all of them or raises a :class:`~wattwise.errors.DeliveryError`
subclass saying what went wrong (see ``wattwise.errors``). Implementations:
InfluxDB over HTTP (1.x ``/write`` and 2.x/3.x ``/api/v2/write``) and the
embedded SQLite store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Transport(Protocol):
    """Delivers batches of line protocol to a telemetry store."""

    name: str

    def write(self, lines: Sequence[bytes]) -> None:
        """Store every line (each without its trailing newline) or raise DeliveryError."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
