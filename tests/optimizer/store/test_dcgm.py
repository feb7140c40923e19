"""Same telemetry, different store: a simulated fleet written through dcgm-exporter's names
into a real Prometheus gives the recommendations it gives from InfluxDB, within 1 %.

The GPUs are exposed as dcgm-exporter exposes them (``DCGM_FI_*``, MiB, fractions, the
energy as a mJ counter, ``Hostname``/``gpu``/``UUID``/``modelName`` labels, and the
``namespace``/``pod`` labels its Kubernetes mapping adds while a pod holds a GPU); the
nodes' and zones' telemetry, which dcgm-exporter does not have, under wattwise's names;
racks and zones come from the store's host map.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.influxd import InfluxServer
from tests.prometheus_peers import (
    PrometheusServer,
    ReplayExporter,
    VictoriaMetricsServer,
    dcgm_exposition,
)
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.views import JobView
from wattwise.common.lineproto import encode_many
from wattwise.optimizer.recommend.placement import PlacementRequest, recommend_placement
from wattwise.optimizer.service.engine import Engine, Snapshot
from wattwise.optimizer.service.settings import load_optimizer_config
from wattwise.optimizer.store import InfluxStore, PrometheusStore
from wattwise.optimizer.store.prometheus import Place
from wattwise.optimizer.telemetry import Scope

START_NS = 1_700_000_040 * 1_000_000_000
GPU_EVERY_S, NODE_EVERY_S, JOB_EVERY_S, MINUTES = 5, 10, 30, 20
NAMESPACE = "ml"


@dataclass(frozen=True)
class Fleet:
    readings: tuple[Reading, ...]
    places: dict[str, Place]
    end_ns: int


def _kubernetes(job: Reading) -> Reading:
    """The twin's Slurm-style job as the pod dcgm-exporter would name."""
    return Reading(
        "gpu_job",
        {**job.tags, "job": f"{NAMESPACE}/{job.tags['job']}", "scheduler": "kubernetes"},
        job.fields,
        job.time_ns,
    )


PIPES = ("tensor_active_pct", "fp64_active_pct", "fp32_active_pct", "fp16_active_pct")


def _with_gpm(reading: Reading) -> Reading:
    """SM and DRAM activity planted as known shares of the twin's utilization, and no pipe
    activity: a site whose dcgm-exporter exposes only SM and DRAM activity, read the same
    from both stores."""
    util = reading.fields.get("util_gpu_pct")
    if reading.measurement != "gpu" or not isinstance(util, float):
        return reading
    fields = {k: v for k, v in reading.fields.items() if k not in PIPES}
    gpm = {"sm_active_pct": 0.9 * util, "dram_active_pct": 0.6 * util}
    return Reading("gpu", reading.tags, {**fields, **gpm}, reading.time_ns)


def _with_pods(readings: list[Reading]) -> list[Reading]:
    """Each GPU reading carries the pod that holds the GPU (from the latest job reading)."""
    holder: dict[tuple[str, str], str] = {}
    out = []
    for r in sorted(readings, key=lambda r: (r.time_ns, r.measurement != "gpu_job")):
        if r.measurement == "gpu_job":
            holder[(r.tags["host"], r.tags["gpu"])] = r.tags["job"].split("/", 1)[1]
        if r.measurement == "gpu":
            pod = holder.get((r.tags["host"], r.tags["gpu"]))
            if pod is not None and float(r.fields.get("util_gpu_pct") or 0) > 0:
                r = Reading("gpu", {**r.tags, "pod": pod}, r.fields, r.time_ns)
        out.append(r)
    return out


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    clock = ManualClock(start_ns=START_NS)
    spec = FleetSpec.uniform(8, 4, racks=2, zones=2, seed=11, busy_share=0.9, idle_gap_mean_s=1e6)
    twin = SimFleet(spec, clock)
    gpus, nodes, jobs = twin.gpu_source(), twin.node_source(), JobView(twin)
    readings: list[Reading] = []
    for second in range(GPU_EVERY_S, MINUTES * 60 + 1, GPU_EVERY_S):
        clock.advance(GPU_EVERY_S)
        readings += [_with_gpm(r) for r in gpus.read()]
        if second % NODE_EVERY_S == 0:
            readings += nodes.read()
        if second % JOB_EVERY_S == 0:
            readings += [_kubernetes(j) for j in jobs.read()]
    places = {t["host"]: Place(t["cluster"], t["zone"], t["rack"]) for t in twin.layout.node_tags}
    twin.close()
    return Fleet(tuple(readings), places, clock.time_ns())


def _engine(store: InfluxStore | PrometheusStore, end_ns: int) -> Engine:
    config = load_optimizer_config(None, {"models.window_s": 1800.0, "recommend.recent_s": 900.0})
    return Engine(store, config, ManualClock(start_ns=end_ns))


@pytest.fixture(scope="module")
def from_influx(influxd: InfluxServer, fleet: Fleet) -> Iterator[Snapshot]:
    database = f"dcgm_{uuid.uuid4().hex[:8]}"
    influxd.create_database(database)
    store = InfluxStore(influxd.url, database=database, clock=ManualClock(start_ns=fleet.end_ns))
    lines = encode_many(fleet.readings)
    for first in range(0, len(lines), 5000):
        store.write(lines[first : first + 5000])
    engine = _engine(store, fleet.end_ns)
    engine.refit()
    yield engine.refresh()
    store.close()


@pytest.fixture(scope="module")
def from_prometheus(
    tmp_path_factory: pytest.TempPathFactory, fleet: Fleet
) -> Iterator[tuple[Snapshot, PrometheusStore]]:
    exporter = ReplayExporter(dcgm_exposition(_with_pods(list(fleet.readings))))
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.address], 5)
    server.start()
    store = PrometheusStore(
        server.url,
        vocabulary="dcgm",
        hosts=fleet.places,
        sample_interval_s=GPU_EVERY_S,
        clock=ManualClock(start_ns=fleet.end_ns),
    )
    try:
        server.wait_for("DCGM_FI_DEV_POWER_USAGE", fleet.end_ns / 1e9, 32)
        engine = _engine(store, fleet.end_ns)
        engine.refit()
        yield engine.refresh(), store
    finally:
        store.close()
        server.stop()
        exporter.stop()


def _close(a: float | None, b: float | None, rel: float = 0.01, abs_: float = 0.5) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


def test_power_caps_match_within_one_percent(
    from_influx: Snapshot, from_prometheus: tuple[Snapshot, PrometheusStore]
) -> None:
    influx = {(c.host, c.gpu): c for c in from_influx.caps}
    prometheus = {(c.host, c.gpu): c for c in from_prometheus[0].caps}
    assert set(prometheus) == set(influx) and len(influx) == 32
    capped = [k for k, c in influx.items() if c.recommended_limit_w is not None]
    assert len(capped) >= 6  # the fleet has work to cap
    for key, a in influx.items():
        b = prometheus[key]
        assert _close(a.recommended_limit_w, b.recommended_limit_w, abs_=5.0), (key, a, b)
        assert _close(a.saving_w, b.saving_w, abs_=2.0), (key, a.saving_w, b.saving_w)
        assert _close(a.slowdown_pct, b.slowdown_pct, abs_=0.1), key
        assert _close(a.boundness, b.boundness, abs_=0.01), (key, a.boundness, b.boundness)
        assert _close(a.confidence, b.confidence, abs_=0.01), (key, a.confidence, b.confidence)
        assert a.evidence.samples == b.evidence.samples, key


def test_cooling_setpoints_match_within_one_percent(
    from_influx: Snapshot, from_prometheus: tuple[Snapshot, PrometheusStore]
) -> None:
    influx = {c.zone: c for c in from_influx.cooling}
    prometheus = {c.zone: c for c in from_prometheus[0].cooling}
    assert set(influx) == set(prometheus) == {"z1", "z2"}
    for zone, a in influx.items():
        b = prometheus[zone]
        assert _close(a.recommended_setpoint_c, b.recommended_setpoint_c, abs_=0.0), zone
        assert _close(a.predicted_max_inlet_c, b.predicted_max_inlet_c, abs_=0.05), zone
        assert _close(a.saving_w, b.saving_w, abs_=5.0), zone


def test_placement_ranks_the_same_nodes(
    from_influx: Snapshot, from_prometheus: tuple[Snapshot, PrometheusStore]
) -> None:
    snapshot, _ = from_prometheus
    request = PlacementRequest(gpus=1)
    config = load_optimizer_config(None, {})
    a = recommend_placement(request, from_influx.fleet, config.placement)
    b = recommend_placement(request, snapshot.fleet, config.placement)
    assert a.candidates, a.rejected
    assert [c.host for c in a.candidates] == [c.host for c in b.candidates]
    assert a.rejected == b.rejected
    for x, y in zip(a.candidates, b.candidates, strict=True):
        assert _close(x.marginal_it_w, y.marginal_it_w, abs_=2.0)


def test_what_dcgm_exporter_lacks_is_missing_never_zero(
    from_prometheus: tuple[Snapshot, PrometheusStore], fleet: Fleet, influxd: InfluxServer
) -> None:
    _, store = from_prometheus
    start_ns = fleet.end_ns - 600 * 1_000_000_000
    series = store.gpu_series(start_ns, fleet.end_ns, every_s=60, scope=Scope())
    assert len(series) == 32 * 10
    # exposed as DCGM_FI_PROF_SM_ACTIVE / DRAM_ACTIVE (fractions): percent again
    busy = series.values["util_gpu_pct"] > 0
    assert busy.any()
    ratio = series.values["sm_active_pct"][busy] / series.values["util_gpu_pct"][busy]
    assert ratio == pytest.approx(0.9, rel=0.02)
    for name in PIPES:
        assert all(math.isnan(v) for v in series.values[name]), name  # not exposed: NaN
    gpus = store.latest_gpus(Scope(zones=("z2",)))
    assert {g.zone for g in gpus} == {"z2"} and len(gpus) == 16  # zones from the host map
    assert all(g.failed is False and g.max_limit_w == 700.0 for g in gpus)
    assert all(g.mem_total_bytes > 80e9 for g in gpus)  # from MiB


@pytest.mark.parametrize("host_label", ["Hostname", "hostname"])
def test_the_host_label_of_either_dcgm_exporter_release_is_found(
    tmp_path: Path, fleet: Fleet, host_label: str
) -> None:
    """dcgm-exporter named its host label Hostname until its May 2026 release, hostname
    since: the store asks /api/v1/labels which one the series carry."""
    server = VictoriaMetricsServer(tmp_path)
    server.start()
    try:
        last = [r for r in fleet.readings if r.time_ns == fleet.end_ns]
        text = dcgm_exposition(last, hostname_label=host_label)
        httpx.post(f"{server.url}/api/v1/import/prometheus", content=text).raise_for_status()
        server.flush()
        store = PrometheusStore(
            server.url, vocabulary="dcgm", clock=ManualClock(start_ns=fleet.end_ns)
        )
        try:
            gpus = store.latest_gpus(Scope())
        finally:
            store.close()
    finally:
        server.stop()
    assert len(gpus) == 32
    assert {g.host for g in gpus} == set(fleet.places)
