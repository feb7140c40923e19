"""What both stores share: the :class:`TelemetryStore` reads, in terms of two primitives.

A store says how to aggregate one measurement into a :class:`Series` and how to
find each series' newest sample; the reads the optimizer calls are the same for
every store and live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

from wattwise.errors import (
    AuthError,
    ConfigError,
    DeliveryError,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
    TransientDeliveryError,
)
from wattwise.optimizer.store.frames import (
    GPU_SPEC,
    HOST_SPEC,
    JOB_SPEC,
    XID_SPEC,
    ZONE_SPEC,
    Latest,
    SeriesSpec,
    gpu_state,
    host_state,
    zone_state,
)
from wattwise.optimizer.telemetry import GpuState, HostState, Scope, Series, ZoneState


class AggregatingStore(ABC):
    """The read half of :class:`~wattwise.optimizer.telemetry.TelemetryStore`."""

    def gpu_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(GPU_SPEC, start_ns, end_ns, _whole_seconds(every_s), scope)

    def host_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(HOST_SPEC, start_ns, end_ns, _whole_seconds(every_s), scope)

    def zone_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(ZONE_SPEC, start_ns, end_ns, _whole_seconds(every_s), scope)

    def job_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(JOB_SPEC, start_ns, end_ns, _whole_seconds(every_s), scope)

    def xid_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(XID_SPEC, start_ns, end_ns, _whole_seconds(every_s), scope)

    def latest_gpus(self, scope: Scope) -> list[GpuState]:
        return [gpu_state(*item) for item in self._latest(GPU_SPEC, scope)]

    def latest_hosts(self, scope: Scope) -> list[HostState]:
        return [host_state(*item) for item in self._latest(HOST_SPEC, scope)]

    def latest_zones(self, scope: Scope) -> list[ZoneState]:
        return [zone_state(*item) for item in self._latest(ZONE_SPEC, scope)]

    @abstractmethod
    def _series(
        self, spec: SeriesSpec, start_ns: int, end_ns: int, every_s: int, scope: Scope
    ) -> Series:
        """``spec``'s measurement aggregated per series into ``every_s`` buckets."""

    @abstractmethod
    def _latest(self, spec: SeriesSpec, scope: Scope) -> list[Latest]:
        """Each series' newest sample, as (tags, time_ns, fields)."""


@contextmanager
def writing() -> Iterator[None]:
    """Turn the agent transports' delivery errors into store errors, for ``write``."""
    try:
        yield
    except AuthError as e:
        raise StoreAuthError(str(e)) from e
    except TransientDeliveryError as e:
        raise StoreUnavailable(str(e)) from e
    except DeliveryError as e:
        raise StoreError(str(e)) from e


def _whole_seconds(every_s: int) -> int:
    if every_s < 1:
        raise ConfigError("every_s", every_s, "a whole number of seconds >= 1")
    return int(every_s)
