"""Metric vocabularies of a Prometheus-compatible store: which series hold each schema field.

``wattwise``: the names VictoriaMetrics gives the agent's line protocol and the agent's
own ``/metrics`` export uses (:mod:`wattwise.common.prom_names`): ``gpu_power_w``
with the tags as labels; an increase field may also be the export's counter
(``gpu_energy_joules_total``). ``dcgm``: NVIDIA dcgm-exporter's ``DCGM_FI_*`` gauges
and counters with its ``Hostname`` (``hostname`` since 2026), ``gpu``, ``UUID`` and
``modelName`` labels and, on Kubernetes, ``namespace``/``pod``. A field dcgm-exporter
does not have (BMC inlet temperature, cooling) is read under the wattwise name, so
a site may write those with the agent or a building-management integration; where
neither exists the column is missing (NaN), never 0.

A :class:`Source` says only which series and what kind of value they hold; how a
column aggregates them (mean, sum, capped share) is the store's one mapping per
``how`` (:mod:`.promql`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from wattwise.collector.schema import MEASUREMENTS
from wattwise.common.prom_names import counter_name, metric_name

Form = Literal["gauge", "counter"]
"""``gauge``: a value per sample (for an increase field, the increase since the previous
sample); ``counter``: a running total whose increase over the bucket is the value."""

MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Source:
    """One series name holding a field: its form, and the factor to the schema's unit."""

    metric: str
    form: Form = "gauge"
    scale: float = 1.0
    matchers: tuple[str, ...] = ()
    """Extra label matchers (PromQL text such as ``pod!=""``)."""


Labels = Mapping[str, str]


@dataclass(frozen=True)
class Measurement:
    """How a measurement's series are found and keyed in one vocabulary."""

    group_by: tuple[str, ...]
    """Store labels the store aggregates by (extra labels such as ``instance`` drop out)."""
    tags: Callable[[Labels], dict[str, str]]
    """A series' schema tags from its store labels."""
    matchers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    name: str
    host_label: str
    sources: Callable[[str, str], tuple[Source, ...]]
    """(measurement, field) → the series holding it, tried in turn (PromQL ``or``)."""
    measurements: dict[str, Measurement] = field(default_factory=dict)

    def measurement(self, name: str, tags: tuple[str, ...]) -> Measurement:
        found = self.measurements.get(name)
        return found if found is not None else _identity(tags)

    def label_of(self, measurement: str, tag: str) -> str:
        """The store label a scope filter on ``tag`` matches."""
        return self.host_label if tag == "host" and measurement in self.measurements else tag


def _identity(tags: tuple[str, ...]) -> Measurement:
    return Measurement(tags, lambda labels: {t: labels.get(t, "") for t in tags})


def wattwise_sources(measurement: str, field_name: str) -> tuple[Source, ...]:
    spec = MEASUREMENTS.get(measurement)
    field_spec = spec.fields.get(field_name) if spec is not None else None
    gauge = Source(metric_name(measurement, field_name))
    counter = counter_name(measurement, field_spec) if field_spec is not None else None
    return (gauge,) if counter is None else (gauge, Source(counter, "counter"))


def wattwise_vocabulary() -> Vocabulary:
    return Vocabulary("wattwise", "host", wattwise_sources)


DCGM_GPU: dict[str, tuple[Source, ...]] = {
    "power_w": (Source("DCGM_FI_DEV_POWER_USAGE"),),
    "power_instant_w": (Source("DCGM_FI_DEV_POWER_USAGE_INSTANT"),),
    "energy_j": (Source("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 1e-3),),
    "temp_c": (Source("DCGM_FI_DEV_GPU_TEMP"),),
    "mem_temp_c": (Source("DCGM_FI_DEV_MEMORY_TEMP"),),
    "slowdown_temp_c": (Source("DCGM_FI_DEV_SLOWDOWN_TEMP"),),
    "sm_clock_mhz": (Source("DCGM_FI_DEV_SM_CLOCK"),),
    "mem_clock_mhz": (Source("DCGM_FI_DEV_MEM_CLOCK"),),
    "util_gpu_pct": (Source("DCGM_FI_DEV_GPU_UTIL"),),
    "util_mem_pct": (Source("DCGM_FI_DEV_MEM_COPY_UTIL"),),
    "mem_used_bytes": (Source("DCGM_FI_DEV_FB_USED", scale=MIB),),
    "mem_total_bytes": (Source("DCGM_FI_DEV_FB_TOTAL", scale=MIB),),
    "power_limit_w": (Source("DCGM_FI_DEV_POWER_MGMT_LIMIT"),),
    "enforced_limit_w": (
        Source("DCGM_FI_DEV_ENFORCED_POWER_LIMIT"),
        Source("DCGM_FI_DEV_POWER_MGMT_LIMIT"),
    ),
    "min_limit_w": (Source("DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN"),),
    "max_limit_w": (Source("DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX"),),
    "default_limit_w": (Source("DCGM_FI_DEV_POWER_MGMT_LIMIT_DEF"),),
    "clock_event_reasons": (
        Source("DCGM_FI_DEV_CLOCKS_EVENT_REASONS"),
        Source("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"),
    ),
    "sm_active_pct": (Source("DCGM_FI_PROF_SM_ACTIVE", scale=100.0),),
    "sm_occupancy_pct": (Source("DCGM_FI_PROF_SM_OCCUPANCY", scale=100.0),),
    "dram_active_pct": (Source("DCGM_FI_PROF_DRAM_ACTIVE", scale=100.0),),
    "tensor_active_pct": (Source("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", scale=100.0),),
    "fp64_active_pct": (Source("DCGM_FI_PROF_PIPE_FP64_ACTIVE", scale=100.0),),
    "fp32_active_pct": (Source("DCGM_FI_PROF_PIPE_FP32_ACTIVE", scale=100.0),),
    "fp16_active_pct": (Source("DCGM_FI_PROF_PIPE_FP16_ACTIVE", scale=100.0),),
    "ecc_corrected_total": (Source("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),),
    "ecc_uncorrected_total": (Source("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),),
    "remapped_rows_pending": (Source("DCGM_FI_DEV_ROW_REMAP_PENDING"),),
    "remapped_rows_failed": (Source("DCGM_FI_DEV_ROW_REMAP_FAILURE"),),
    "pcie_replays_total": (Source("DCGM_FI_DEV_PCIE_REPLAY_COUNTER"),),
}
"""``gpu`` fields in dcgm-exporter's names (its default counters plus those a site enables
in its CSV: limits, slowdown temperature, clock-event reasons, the profiling fields)."""

DCGM_JOB: dict[str, tuple[Source, ...]] = {
    "power_w": (Source("DCGM_FI_DEV_POWER_USAGE", matchers=('pod!=""',)),),
    "used_mem_bytes": (Source("DCGM_FI_DEV_FB_USED", scale=MIB, matchers=('pod!=""',)),),
}
"""``gpu_job`` from the pod labels dcgm-exporter adds on Kubernetes: the GPU's power and
memory while a pod holds it (one pod per GPU, as the device plugin gives them)."""


def dcgm_vocabulary(host_label: str = "Hostname") -> Vocabulary:
    """dcgm-exporter's names; ``host_label`` is ``Hostname``, or ``hostname`` since 2026."""

    def gpu_tags(labels: Labels) -> dict[str, str]:
        return {
            "host": labels.get(host_label, ""),
            "gpu": labels.get("gpu", ""),
            "uuid": labels.get("UUID", labels.get("uuid", "")),
            "model": labels.get("modelName", ""),
            **{t: labels.get(t, "") for t in ("cluster", "zone", "rack")},
        }

    def job_tags(labels: Labels) -> dict[str, str]:
        pod = labels.get("pod", "")
        namespace = labels.get("namespace", "")
        return {
            "host": labels.get(host_label, ""),
            "gpu": labels.get("gpu", ""),
            "job": f"{namespace}/{pod}" if namespace else pod,
            "scheduler": "kubernetes",
            **{t: labels.get(t, "") for t in ("cluster", "zone", "rack")},
        }

    def sources(measurement: str, field_name: str) -> tuple[Source, ...]:
        table = {"gpu": DCGM_GPU, "gpu_job": DCGM_JOB}.get(measurement)
        if table is None:
            return wattwise_sources(measurement, field_name)
        return table.get(field_name, ())

    places = ("cluster", "zone", "rack")
    return Vocabulary(
        "dcgm",
        host_label,
        sources,
        {
            "gpu": Measurement((host_label, "gpu", "UUID", "uuid", "modelName", *places), gpu_tags),
            "gpu_job": Measurement(
                (host_label, "gpu", "namespace", "pod", *places), job_tags, ('pod!=""',)
            ),
        },
    )
