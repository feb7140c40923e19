"""Every reading the agent takes, on its ``/metrics`` for a Prometheus site to scrape.

Off by default (``metrics.export_readings``). Each schema field of the newest
reading of each series becomes a gauge named as VictoriaMetrics names the same
line-protocol field (:mod:`wattwise.common.prom_names`: ``gpu_power_w{host,gpu,
uuid,model,cluster,zone,rack}``), so a site can scrape wattwise beside or
instead of dcgm-exporter and the optimizer reads either path the same way.
Fields that hold an increase since the previous sample (``energy_j``, ``gpu_xid``
``count``) are added up into counters since the agent started
(``gpu_energy_joules_total``): a scrape every 15 s would otherwise see one tick's
increase and miss the rest. Self-metrics stay ``wattwise_agent_*``.

A series whose device stopped reporting (a failed GPU still reports ``failed``;
a node that was reconfigured does not) leaves the export after ``stale_after_s``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from wattwise.clock import Clock
from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.schema import MEASUREMENTS
from wattwise.common.prom_names import counter_name, metric_name

NOT_EXPORTED_MEASUREMENTS = frozenset({"agent"})
"""The agent's self-metrics are exported as ``wattwise_agent_*`` already."""
NOT_EXPORTED_FIELDS = frozenset({"energy_interval_s"})
"""Meaningful only beside the one increase it describes, which becomes a counter."""

Labels = tuple[tuple[str, str], ...]
_NOT_IN_LABEL = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class _Series:
    seen_s: float
    gauges: dict[str, float] = field(default_factory=dict)


class ReadingsExport(Collector):
    """The newest value of every exported field and the running counters, by series."""

    def __init__(self, clock: Clock, *, stale_after_s: float = 120.0) -> None:
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._series: dict[tuple[str, Labels], _Series] = {}
        self._counters: dict[tuple[str, Labels], float] = {}

    def observe(self, readings: Sequence[Reading]) -> None:
        """Take a tick's readings (with the node's labels already on them)."""
        now_s = self._clock.monotonic()
        with self._lock:
            for reading in readings:
                spec = MEASUREMENTS.get(reading.measurement)
                if spec is None or reading.measurement in NOT_EXPORTED_MEASUREMENTS:
                    continue
                labels = tuple(sorted((_label(k), v) for k, v in reading.tags.items() if v))
                series = self._series.setdefault(
                    (reading.measurement, labels), _Series(seen_s=now_s)
                )
                series.seen_s = now_s
                for name, value in reading.fields.items():
                    number = _number(value)
                    field_spec = spec.fields.get(name)
                    if number is None or field_spec is None or name in NOT_EXPORTED_FIELDS:
                        continue
                    counter = counter_name(reading.measurement, field_spec)
                    if counter is None:
                        series.gauges[name] = number
                    else:
                        key = (counter, labels)
                        self._counters[key] = self._counters.get(key, 0.0) + number

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        now_s = self._clock.monotonic()
        gauges: dict[str, list[tuple[Labels, float]]] = {}
        counters: dict[str, list[tuple[Labels, float]]] = {}
        with self._lock:
            stale = [k for k, s in self._series.items() if now_s - s.seen_s > self._stale_after_s]
            for key in stale:
                del self._series[key]
            for (measurement, labels), series in self._series.items():
                for name, value in series.gauges.items():
                    gauges.setdefault(metric_name(measurement, name), []).append((labels, value))
            # counters stay while the agent runs: an XID's count must not vanish with its tick
            for (name, labels), total in self._counters.items():
                counters.setdefault(name, []).append((labels, total))
        docs = _docs()
        for name, samples in sorted(gauges.items()):
            family = GaugeMetricFamily(name, docs.get(name, name), labels=_label_names(samples))
            _add(family, samples)
            yield family
        for name, samples in sorted(counters.items()):
            counter = CounterMetricFamily(name, docs.get(name, name), labels=_label_names(samples))
            _add(counter, samples)
            yield counter


def _label(name: str) -> str:
    """A Prometheus label name for a tag: characters it does not allow become ``_`` (an
    operator's label such as ``site-id``), so one odd tag cannot break the whole page."""
    cleaned = _NOT_IN_LABEL.sub("_", name)
    return cleaned if cleaned[:1].isalpha() or cleaned[:1] == "_" else f"_{cleaned}"


def _number(value: FieldValue | None) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)


def _label_names(samples: list[tuple[Labels, float]]) -> list[str]:
    return sorted({name for labels, _ in samples for name, _ in labels})


def _add(
    family: GaugeMetricFamily | CounterMetricFamily, samples: list[tuple[Labels, float]]
) -> None:
    names = _label_names(samples)  # the order the family was made with
    for labels, value in samples:
        given = dict(labels)
        family.add_metric([given.get(name, "") for name in names], value)


@cache
def _docs() -> dict[str, str]:
    """Exported name → the schema's meaning and unit of its field (as in docs/schema.md)."""
    docs = {}
    for measurement, spec in MEASUREMENTS.items():
        for field_name, field_spec in spec.fields.items():
            text = f"{field_spec.meaning} ({field_spec.unit})"
            docs[metric_name(measurement, field_name)] = text
            counter = counter_name(measurement, field_spec)
            if counter is not None:
                docs[counter] = text
    return docs
