"""The agent's Prometheus export of its readings, parsed back as Prometheus would parse it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.influxd import free_port
from wattwise.agent.config import AgentConfig, MetricsSettings
from wattwise.agent.export import ReadingsExport
from wattwise.agent.loop import Schedule, TickLoop
from wattwise.agent.runtime import AgentRuntime
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.common.lineproto import encode

GPU_TAGS = {"host": "n1", "gpu": "0", "uuid": "GPU-1", "model": "H100", "rack": "r1"}


def scrape(export: ReadingsExport) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(export)
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def gpu(time_s: int, **fields: float | int | None) -> Reading:
    return Reading("gpu", GPU_TAGS, fields, time_s * 1_000_000_000)


def test_gauges_carry_the_line_protocol_names_and_the_tags_as_labels() -> None:
    export = ReadingsExport(ManualClock())
    export.observe([gpu(1, power_w=312.5, temp_c=51.0, failed=0, mem_temp_c=None)])
    metrics = scrape(export)
    labels = tuple(sorted(GPU_TAGS.items()))
    assert metrics["gpu_power_w"] == {labels: 312.5}
    assert metrics["gpu_failed"] == {labels: 0.0}
    assert "gpu_mem_temp_c" not in metrics  # missing stays missing, never 0


def test_increases_add_up_into_counters_and_gauges_keep_the_newest() -> None:
    export = ReadingsExport(ManualClock())
    export.observe([gpu(1, power_w=300.0, energy_j=3000.0, energy_interval_s=10.0)])
    export.observe([gpu(2, power_w=310.0)])
    export.observe([gpu(11, power_w=320.0, energy_j=3100.0, energy_interval_s=10.0)])
    xid = Reading("gpu_xid", {**GPU_TAGS, "xid": "79"}, {"count": 1}, 12_000_000_000)
    export.observe([xid, xid])
    metrics = scrape(export)
    labels = tuple(sorted(GPU_TAGS.items()))
    assert metrics["gpu_energy_joules_total"] == {labels: 6100.0}
    assert metrics["gpu_power_w"] == {labels: 320.0}
    assert metrics["gpu_xid_errors_total"] == {tuple(sorted({**GPU_TAGS, "xid": "79"}.items())): 2}
    assert "gpu_energy_j" not in metrics and "gpu_energy_interval_s" not in metrics


def test_a_series_that_stops_reporting_leaves_the_export_but_counters_stay() -> None:
    clock = ManualClock()
    export = ReadingsExport(clock, stale_after_s=60.0)
    export.observe([gpu(1, power_w=300.0, energy_j=10.0)])
    clock.advance(61.0)
    metrics = scrape(export)
    assert "gpu_power_w" not in metrics
    assert list(metrics["gpu_energy_joules_total"].values()) == [10.0]


def test_the_loop_shows_the_export_readings_with_the_node_labels() -> None:
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(1, 2, seed=3), clock)
    export = ReadingsExport(clock)
    sink: list[bytes] = []

    class Sink:
        def append(self, lines: Sequence[bytes]) -> bool:
            sink.extend(lines)
            return True

    loop = TickLoop(
        [Schedule(fleet.gpu_source(), 1.0)],
        Sink(),
        clock=clock,
        encode=encode,
        labels={"site": "s9"},
        observe=export.observe,
    )
    loop.tick()
    metrics = scrape(export)
    assert len(metrics["gpu_power_w"]) == 2
    assert all(dict(labels)["site"] == "s9" for labels in metrics["gpu_power_w"])
    assert len(sink) == 2  # the lines went to the sink as before


@pytest.mark.parametrize("export_readings", [True, False])
def test_the_running_agent_serves_its_readings_only_when_asked(
    tmp_path: Path, export_readings: bool
) -> None:
    port = free_port()
    config = AgentConfig.model_validate(
        {
            "agent": {"host": "n1", "source": "sim", "sim": {"nodes": 1, "gpus_per_node": 2}},
            "store": {"kind": "embedded", "embedded_path": f"{tmp_path}/store.sqlite"},
            "wal": {"dir": f"{tmp_path}/wal"},
            "metrics": MetricsSettings(
                prometheus_port=port, export_readings=export_readings
            ).model_dump(),
        }
    )
    runtime = AgentRuntime.from_config(config, environ={})
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,))
    thread.start()
    try:
        expect = "gpu_power_w" if export_readings else "wattwise_agent_"
        text = _scrape_when_up(f"http://127.0.0.1:{port}/metrics", expect)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert "wattwise_agent_sent_lines_total" in text
    assert ("gpu_power_w{" in text) is export_readings


def _scrape_when_up(url: str, expect: str) -> str:
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=2).text
            if expect in text:
                return text
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return text


def test_a_tag_prometheus_cannot_name_becomes_a_label_it_can() -> None:
    export = ReadingsExport(ManualClock())
    export.observe([Reading("gpu", {**GPU_TAGS, "site-id": "a1"}, {"power_w": 1.0}, 1)])
    (labels,) = scrape(export)["gpu_power_w"]
    assert dict(labels)["site_id"] == "a1"
