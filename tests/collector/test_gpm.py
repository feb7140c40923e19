"""GPM metrics through the NVML source, against the fake NVML's real pynvml structures."""

from __future__ import annotations

import logging

import pynvml
import pytest

from tests.collector.test_nvml import by_gpu, make_source, tick
from wattwise.clock import ManualClock
from wattwise.collector.fake_nvml import FakeGpu, FakeNvml
from wattwise.collector.gpm import GPM_FIELDS
from wattwise.collector.nvml import open_nvml_source
from wattwise.collector.nvml_api import (
    GPM_METRIC_ANY_TENSOR_UTIL,
    GPM_METRIC_DRAM_BW_UTIL,
    GPM_METRIC_FP16_UTIL,
    GPM_METRIC_FP32_UTIL,
    GPM_METRIC_FP64_UTIL,
    GPM_METRIC_SM_OCCUPANCY,
    GPM_METRIC_SM_UTIL,
    GPM_METRICS_GET_VERSION,
)

BUSY = {
    "sm_active_pct": 97.5,
    "sm_occupancy_pct": 41.0,
    "dram_active_pct": 62.25,
    "tensor_active_pct": 55.0,
    "fp64_active_pct": 0.5,
    "fp32_active_pct": 12.0,
    "fp16_active_pct": 3.0,
}


def _busy(gpu: FakeGpu) -> None:
    for name, value in BUSY.items():
        setattr(gpu, name, value)


def test_metric_ids_and_version_are_pynvml_s() -> None:
    assert GPM_METRICS_GET_VERSION == pynvml.NVML_GPM_METRICS_GET_VERSION
    assert GPM_FIELDS == {
        "sm_active_pct": pynvml.NVML_GPM_METRIC_SM_UTIL,
        "sm_occupancy_pct": pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
        "dram_active_pct": pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
        "tensor_active_pct": pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
        "fp64_active_pct": pynvml.NVML_GPM_METRIC_FP64_UTIL,
        "fp32_active_pct": pynvml.NVML_GPM_METRIC_FP32_UTIL,
        "fp16_active_pct": pynvml.NVML_GPM_METRIC_FP16_UTIL,
    }
    assert (GPM_METRIC_SM_UTIL, GPM_METRIC_SM_OCCUPANCY, GPM_METRIC_DRAM_BW_UTIL) == (2, 3, 10)
    assert (GPM_METRIC_ANY_TENSOR_UTIL, GPM_METRIC_FP64_UTIL) == (5, 11)
    assert (GPM_METRIC_FP32_UTIL, GPM_METRIC_FP16_UTIL) == (12, 13)


def test_first_tick_has_no_interval_then_each_tick_gets_the_metrics_between_samples() -> None:
    source, nvml, clock = make_source(gpus=1)
    first = by_gpu(source.read(), 0).fields
    assert all(first[name] is None for name in GPM_FIELDS)  # one sample: nothing to compare
    _busy(nvml.gpus[0])
    fields = by_gpu(tick(source, nvml, clock, 1.0), 0).fields
    assert {name: fields[name] for name in GPM_FIELDS} == BUSY
    nvml.gpus[0].sm_active_pct = 10.0
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["sm_active_pct"] == 10.0
    # one sample per tick, two buffers in turn: no allocation after the first tick
    assert nvml.count("nvmlGpmSampleGet", 0) == 3


def test_a_gpu_without_gpm_has_the_fields_missing_not_zero() -> None:
    a100 = FakeGpu(uuid="GPU-a100", name="NVIDIA A100-SXM4-80GB", gpm_supported=False)
    nvml, clock = FakeNvml([a100, FakeGpu(uuid="GPU-h100")]), ManualClock()
    source = open_nvml_source("node1", clock, nvml=nvml)
    _busy(nvml.gpus[1])
    source.read()
    clock.advance(1.0)
    readings = source.read()
    old = by_gpu(readings, 0)
    assert all(old.fields[name] is None for name in GPM_FIELDS)
    assert old.fields["power_w"] == 75.0
    assert nvml.count("nvmlGpmSampleGet", 0) == 0  # never asked
    assert by_gpu(readings, 1).fields["dram_active_pct"] == 62.25


def test_mig_mode_leaves_the_fields_missing_and_restarts_the_interval_after() -> None:
    source, nvml, clock = make_source(gpus=1)
    gpu = nvml.gpus[0]
    _busy(gpu)
    source.read()
    gpu.mig_mode = 1
    fields = by_gpu(tick(source, nvml, clock, 1.0), 0).fields
    assert all(fields[name] is None for name in GPM_FIELDS)
    gpu.mig_mode = 0
    again = by_gpu(tick(source, nvml, clock, 1.0), 0).fields
    assert all(again[name] is None for name in GPM_FIELDS)  # a new first sample
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["tensor_active_pct"] == 55.0


def test_gpm_failure_on_one_gpu_blanks_neither_its_other_fields_nor_other_gpus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, nvml, clock = make_source(gpus=2)
    for gpu in nvml.gpus:
        _busy(gpu)
    source.read()
    nvml.gpus[0].gpm_error = pynvml.NVML_ERROR_UNKNOWN
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            readings = tick(source, nvml, clock, 1.0)
    broken, fine = by_gpu(readings, 0), by_gpu(readings, 1)
    assert all(broken.fields[name] is None for name in GPM_FIELDS)
    assert broken.fields["failed"] == 0 and broken.fields["power_w"] == 75.0
    assert fine.fields["sm_active_pct"] == 97.5
    assert sum("GPM metrics unavailable" in m for m in caplog.messages) == 1
    nvml.gpus[0].gpm_error = None
    tick(source, nvml, clock, 1.0)  # a new first sample after the failure
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["sm_occupancy_pct"] == 41.0


def test_a_lost_gpu_is_failed_by_its_other_reads_and_gpm_picks_up_after() -> None:
    source, nvml, clock = make_source(gpus=1)
    _busy(nvml.gpus[0])
    source.read()
    nvml.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields == {"failed": 1}
    nvml.gpus[0].error = None
    tick(source, nvml, clock, 1.0)
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["fp32_active_pct"] == 12.0


def test_gpm_samples_are_freed_on_close() -> None:
    source, nvml, clock = make_source(gpus=2)
    source.read()
    tick(source, nvml, clock, 1.0)
    source.close()
    assert nvml.samples_freed == 4  # two buffers per GPU
