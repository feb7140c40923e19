"""Prometheus names of wattwise's measurements: one naming for every path into Prometheus.

VictoriaMetrics stores a line-protocol field as ``<measurement>_<field>`` with the
tags as labels (``gpu,host=n1,gpu=0 power_w=312.5`` becomes
``gpu_power_w{host="n1",gpu="0"}``), so the agent's own ``/metrics`` export uses the
same names and a Prometheus-compatible store reads one vocabulary whichever way the
data came in. The one difference: a field that holds an increase since the previous
sample (``energy_j``; the schema marks it with ``counter``) is exported by the agent
as the running counter ``<measurement>_<counter>_total`` (``gpu_energy_joules_total``),
since a scrape would miss the increases between two scrapes.
"""

from __future__ import annotations

from wattwise.collector.base import FieldSpec


def metric_name(measurement: str, field: str) -> str:
    """``gpu_power_w``: the name VictoriaMetrics gives the line-protocol field."""
    return f"{measurement}_{field}"


def counter_name(measurement: str, spec: FieldSpec) -> str | None:
    """``gpu_energy_joules_total`` for an increase field; None for any other field."""
    return f"{measurement}_{spec.counter}_total" if spec.counter else None
