"""The NVML source against the fake NVML (real pynvml errors and structs, fake GPUs)."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from wattwise.clock import ManualClock
from wattwise.collector.base import Reading, Source
from wattwise.collector.fake_nvml import FakeGpu, FakeMig, FakeNvml
from wattwise.collector.nvml import CounterDelta, NvmlSource, open_nvml_source
from wattwise.collector.nvml_api import FI_MEMORY_TEMP
from wattwise.collector.schema import GPU, GPU_MIG
from wattwise.errors import SourceUnavailable

REPO = Path(__file__).resolve().parents[2]


def make_source(
    gpus: int = 2, energy_every_s: float = 10.0, **kwargs: object
) -> tuple[NvmlSource, FakeNvml, ManualClock]:
    nvml, clock = FakeNvml.h100s(gpus), ManualClock()
    source = open_nvml_source("node1", clock, nvml=nvml, energy_every_s=energy_every_s, **kwargs)  # type: ignore[arg-type]
    return source, nvml, clock


def tick(source: NvmlSource, nvml: FakeNvml, clock: ManualClock, seconds: float) -> list[Reading]:
    """Let every GPU run for ``seconds`` of wall time, then read once."""
    clock.advance(seconds)
    for gpu in nvml.gpus:
        gpu.run(seconds)
    return source.read()


def by_gpu(readings: list[Reading], index: int) -> Reading:
    (reading,) = [r for r in readings if r.measurement == "gpu" and r.tags["gpu"] == str(index)]
    return reading


def test_source_satisfies_the_source_protocol() -> None:
    source, _, _ = make_source()
    assert isinstance(source, Source)
    assert source.name == "nvml"


def test_fields_and_types_match_the_schema() -> None:
    source, nvml, clock = make_source(gpus=1)
    source.read()
    readings = tick(source, nvml, clock, 10.0)  # second counter read: energy present too
    reading = by_gpu(readings, 0)
    assert set(reading.tags) == {"host", "gpu", "uuid", "model"}
    assert set(reading.fields) <= set(GPU.fields)
    # Every schema field but 'failed' is a real value on a healthy H100 after two reads.
    assert set(reading.present_fields()) == set(GPU.fields)
    for name, value in reading.present_fields().items():
        assert type(value) is GPU.fields[name].kind, name


def test_values_are_converted_to_schema_units() -> None:
    source, nvml, _ = make_source(gpus=1)
    gpu = nvml.gpus[0]
    gpu.power_mw, gpu.power_instant_mw, gpu.power_limit_mw = 699_123, 712_000, 500_000
    gpu.sm_clock_mhz, gpu.util_gpu_pct, gpu.clock_event_reasons = 1365, 99, 0x4
    fields = by_gpu(source.read(), 0).fields
    assert fields["power_w"] == pytest.approx(699.123)
    assert fields["power_instant_w"] == pytest.approx(712.0)
    assert fields["power_limit_w"] == 500.0
    assert fields["sm_clock_mhz"] == 1365.0
    assert fields["util_gpu_pct"] == 99.0
    assert fields["clock_event_reasons"] == 0x4
    assert by_gpu(source.read(), 0).tags["model"] == "NVIDIA H100 80GB HBM3"


def test_limits_configured_enforced_and_range() -> None:
    source, nvml, _ = make_source(gpus=1)
    nvml.gpus[0].power_limit_mw, nvml.gpus[0].enforced_limit_mw = 450_000, 400_000
    fields = by_gpu(source.read(), 0).fields
    assert (fields["power_limit_w"], fields["enforced_limit_w"]) == (450.0, 400.0)
    assert (fields["min_limit_w"], fields["max_limit_w"]) == (200.0, 700.0)
    assert fields["default_limit_w"] == 700.0
    assert fields["slowdown_temp_c"] == 87.0


def test_clock_event_reasons_follow_the_gpu_each_tick() -> None:
    source, nvml, clock = make_source(gpus=1)
    assert by_gpu(source.read(), 0).fields["clock_event_reasons"] == 0x1
    nvml.gpus[0].clock_event_reasons = 0x4 | 0x40  # power cap and hardware thermal
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["clock_event_reasons"] == 0x44


def test_unsupported_function_is_missing_not_zero() -> None:
    source, nvml, _ = make_source(gpus=1)
    nvml.gpus[0].unsupported = {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates"}
    fields = by_gpu(source.read(), 0).fields
    assert fields["power_w"] is None
    assert fields["util_gpu_pct"] is None and fields["util_mem_pct"] is None
    assert fields["failed"] == 0
    assert fields["temp_c"] == 33.0


def test_unsupported_field_value_is_missing_not_zero() -> None:
    source, nvml, _ = make_source(gpus=1)
    nvml.gpus[0].unsupported = {FI_MEMORY_TEMP}
    fields = by_gpu(source.read(), 0).fields
    assert fields["mem_temp_c"] is None
    assert fields["power_instant_w"] == 74.0


def test_lost_gpu_does_not_blank_the_others_and_is_picked_up_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, nvml, clock = make_source(gpus=3)
    source.read()
    nvml.gpus[1].error = pynvml.NVML_ERROR_GPU_IS_LOST
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            readings = tick(source, nvml, clock, 1.0)
    lost = by_gpu(readings, 1)
    assert lost.present_fields() == {"failed": 1}
    assert lost.tags["uuid"] == nvml.gpus[1].uuid
    for healthy in (0, 2):
        assert by_gpu(readings, healthy).fields["failed"] == 0
        assert by_gpu(readings, healthy).fields["power_w"] == 75.0
    assert sum("failed" in m for m in caplog.messages) == 1  # said once, not per tick
    assert source.device_errors_total == 3

    nvml.gpus[1].error = None
    back = by_gpu(tick(source, nvml, clock, 1.0), 1)
    assert back.fields["failed"] == 0 and back.fields["power_w"] == 75.0


def test_unknown_error_marks_only_that_gpu_failed() -> None:
    source, nvml, _ = make_source(gpus=2)
    nvml.gpus[0].error = pynvml.NVML_ERROR_UNKNOWN
    readings = source.read()
    assert by_gpu(readings, 0).fields == {"failed": 1}
    assert by_gpu(readings, 1).fields["failed"] == 0


def test_gpu_lost_at_start_is_picked_up_when_it_answers() -> None:
    nvml, clock = FakeNvml.h100s(2), ManualClock()
    nvml.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    source = open_nvml_source("node1", clock, nvml=nvml)
    assert by_gpu(source.read(), 0).fields == {"failed": 1}
    nvml.gpus[0].error = None
    reading = by_gpu(source.read(), 0)
    assert reading.fields["failed"] == 0
    assert reading.tags["model"] == "NVIDIA H100 80GB HBM3"
    assert reading.fields["max_limit_w"] == 700.0


def test_each_device_is_read_once_per_tick() -> None:
    source, nvml, clock = make_source(gpus=4)
    for _ in range(5):
        tick(source, nvml, clock, 1.0)
    for index in range(4):
        assert nvml.count("nvmlDeviceGetPowerUsage", index) == 5
        assert nvml.count("nvmlDeviceGetFieldValues", index) == 5
        assert nvml.count("nvmlDeviceGetMemoryInfo", index) == 5
        assert nvml.count("nvmlDeviceGetName", index) == 1  # static: read at discovery only


def test_energy_counter_is_read_only_every_energy_every_s() -> None:
    source, nvml, clock = make_source(gpus=2, energy_every_s=10.0)
    source.read()
    for _ in range(40):  # 40 one-second ticks
        tick(source, nvml, clock, 1.0)
    for index in range(2):
        # at start (GPU 0) or after 5 s (GPU 1, staggered), then every 10 s
        assert nvml.count("nvmlDeviceGetTotalEnergyConsumption", index) == 4 + (index == 0)


def test_energy_reads_are_staggered_across_gpus() -> None:
    source, nvml, clock = make_source(gpus=4, energy_every_s=4.0)
    source.read()
    per_tick = []
    for _ in range(12):
        before = nvml.count("nvmlDeviceGetTotalEnergyConsumption")
        tick(source, nvml, clock, 1.0)
        per_tick.append(nvml.count("nvmlDeviceGetTotalEnergyConsumption") - before)
    assert per_tick == [1] * 12  # never all four 3.8 ms reads in one tick


def test_energy_is_the_exact_counter_delta_over_its_interval() -> None:
    source, nvml, clock = make_source(gpus=1, energy_every_s=10.0)
    source.read()  # baseline, no energy yet
    energies = []
    for power_mw in [300_000] * 5 + [700_000] * 5:
        nvml.gpus[0].power_mw = power_mw
        reading = by_gpu(tick(source, nvml, clock, 1.0), 0)
        energies.append((reading.fields.get("energy_j"), reading.fields.get("energy_interval_s")))
    assert energies[:9] == [(None, None)] * 9
    assert energies[9][0] == pytest.approx(5 * 300 + 5 * 700)
    assert energies[9][1] == 10.0


def test_energy_counter_reset_drops_that_interval_and_rebaselines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, nvml, clock = make_source(gpus=1, energy_every_s=1.0)
    source.read()
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["energy_j"] == pytest.approx(75.0)
    nvml.gpus[0].reload_driver()
    with caplog.at_level(logging.WARNING):
        after_reset = by_gpu(tick(source, nvml, clock, 1.0), 0)
    assert "energy_j" not in after_reset.fields
    assert any("energy counter went back" in m for m in caplog.messages)
    assert by_gpu(tick(source, nvml, clock, 1.0), 0).fields["energy_j"] == pytest.approx(75.0)


def test_energy_over_an_outage_is_counted_when_the_gpu_returns() -> None:
    source, nvml, clock = make_source(gpus=1, energy_every_s=1.0)
    source.read()
    nvml.gpus[0].error = pynvml.NVML_ERROR_GPU_IS_LOST
    tick(source, nvml, clock, 1.0)
    nvml.gpus[0].error = None
    fields = by_gpu(tick(source, nvml, clock, 1.0), 0).fields
    # The counter kept running: both seconds are in the next delta.
    assert fields["energy_j"] == pytest.approx(150.0)
    assert fields["energy_interval_s"] == 2.0


def test_energy_read_as_a_field_value_gives_the_same_delta() -> None:
    source, nvml, clock = make_source(gpus=1, energy_every_s=1.0, energy_read="field")
    source.read()
    fields = by_gpu(tick(source, nvml, clock, 2.0), 0).fields
    assert fields["energy_j"] == pytest.approx(150.0)
    assert nvml.count("nvmlDeviceGetTotalEnergyConsumption") == 0


def test_counter_delta_first_value_and_reset() -> None:
    counter = CounterDelta()
    assert counter.update(100.0, 1.0) is None
    assert counter.update(160.0, 3.0) == (60.0, 2.0)
    assert counter.update(10.0, 4.0) is None
    assert counter.resets == 1
    assert counter.update(15.0, 5.0) == (5.0, 1.0)


def test_pcie_throughput_from_byte_counters() -> None:
    source, nvml, clock = make_source(gpus=1)
    assert by_gpu(source.read(), 0).fields["pcie_tx_bytes_per_s"] is None  # no interval yet
    nvml.gpus[0].pcie_tx_bytes += 4_000_000
    nvml.gpus[0].pcie_rx_bytes += 1_000_000
    fields = by_gpu(tick(source, nvml, clock, 2.0), 0).fields
    assert fields["pcie_tx_bytes_per_s"] == 2_000_000.0
    assert fields["pcie_rx_bytes_per_s"] == 500_000.0


def test_ecc_totals_are_ints() -> None:
    source, nvml, _ = make_source(gpus=1)
    nvml.gpus[0].ecc_corrected, nvml.gpus[0].ecc_uncorrected = 12, 1
    fields = by_gpu(source.read(), 0).fields
    assert (fields["ecc_corrected_total"], fields["ecc_uncorrected_total"]) == (12, 1)


def test_mig_on_emits_per_instance_memory() -> None:
    nvml, clock = FakeNvml([FakeGpu(uuid="GPU-a", mig_mode=1)]), ManualClock()
    nvml.gpus[0].migs = [
        FakeMig(gi=1, uuid="MIG-1", mem_used_bytes=1_000),
        FakeMig(gi=2, uuid="MIG-2", mem_used_bytes=2_000),
    ]
    readings = open_nvml_source("node1", clock, nvml=nvml).read()
    gpu = by_gpu(readings, 0)
    assert gpu.fields["mig_mode"] == 1
    assert gpu.fields["util_gpu_pct"] is None  # not supported with MIG on
    migs = [r for r in readings if r.measurement == "gpu_mig"]
    assert [(r.tags["gi"], r.tags["mig_uuid"]) for r in migs] == [("1", "MIG-1"), ("2", "MIG-2")]
    assert [r.fields["mem_used_bytes"] for r in migs] == [1_000, 2_000]
    for reading in migs:
        assert set(reading.tags) == set(GPU_MIG.tags) - {"cluster", "zone", "rack"}
        assert set(reading.fields) == set(GPU_MIG.fields)


def test_mig_off_emits_no_mig_readings() -> None:
    source, _, _ = make_source(gpus=1)
    readings = source.read()
    assert [r.measurement for r in readings] == ["gpu"]
    assert readings[0].fields["mig_mode"] == 0


def test_node_labels_become_tags() -> None:
    source, _, _ = make_source(gpus=1, labels={"cluster": "c1", "zone": "z1", "rack": "r7"})
    tags = source.read()[0].tags
    assert (tags["cluster"], tags["zone"], tags["rack"], tags["host"]) == (
        "c1",
        "z1",
        "r7",
        "node1",
    )


def test_no_nvml_library_raises_source_unavailable_with_a_clear_message() -> None:
    nvml = FakeNvml.h100s(1)
    nvml.library_missing = True
    with pytest.raises(SourceUnavailable, match=r"libnvidia-ml\.so\.1 was not found") as info:
        open_nvml_source("node1", ManualClock(), nvml=nvml)
    assert "host metrics continue" in str(info.value)
    assert isinstance(info.value.__cause__, pynvml.NVMLError_LibraryNotFound)


def test_no_pynvml_module_raises_source_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    with pytest.raises(SourceUnavailable, match="nvidia-ml-py"):
        open_nvml_source("node1", ManualClock())


def test_no_gpu_at_all_raises_source_unavailable_and_releases_nvml() -> None:
    nvml = FakeNvml([])
    with pytest.raises(SourceUnavailable, match="no NVIDIA GPU"):
        open_nvml_source("node1", ManualClock(), nvml=nvml)
    assert not nvml.initialised


def test_close_shuts_nvml_down() -> None:
    source, nvml, _ = make_source(gpus=1)
    source.close()
    assert nvml.count("nvmlShutdown") == 1 and not nvml.initialised


def test_bench_runs_on_the_fake_and_reports_the_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "nvml_tick.py"), "--fake", "--ticks", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "per GPU per tick" in result.stdout
    assert "ratio" in result.stdout


def test_bench_agreement_flags_power_temperature_and_clock_differences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("nvml_tick", REPO / "bench" / "nvml_tick.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "nvml_tick", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    smi = bench.parse_smi_csv("0, 400.00, 60, 1980\n1, [N/A], 55, 1410\n")
    assert smi[1].power_w is None
    assert bench.disagreements(bench.Probe(415.0, 61.9, 1980.0), smi[0]) == []
    problems = bench.disagreements(bench.Probe(421.0, 62.5, 1965.0), smi[0])
    assert [p.split()[0] for p in problems] == ["power", "temperature", "SM"]


def test_bench_agreement_mode_on_the_fake_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "nvml_tick.py"), "--fake", "--mode", "agree"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agree" in result.stdout
