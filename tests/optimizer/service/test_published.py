"""Junk telemetry and models that extrapolate, against the live API: the fleet keeps its
recommendations, the junk is counted where operators look, and no impossible number is
ever published."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.optimizer.service.support import ADMIN_TOKEN, READ_TOKEN, config, serve
from wattwise.clock import ManualClock
from wattwise.collector.base import Reading
from wattwise.common.embedded import EmbeddedStore
from wattwise.common.lineproto import encode_many
from wattwise.optimizer import bounds as b
from wattwise.optimizer.service.app import create_app
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.store import EmbeddedSqliteStore

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def own_copy(twin_data: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    path, end_ns = twin_data
    copy = tmp_path / "wattwise.sqlite"
    shutil.copy(path, copy)
    return copy, end_ns


def spoil(path: Path, measurement: str, field: str, value: float, series: int = 3) -> None:
    """``field`` = ``value`` in every sample of the last 10 minutes of ``series`` series."""
    writer = EmbeddedStore(path)
    latest = writer.latest(measurement)[:series]
    lines = encode_many(
        Reading(measurement, dict(p.tags), {field: value}, p.time_ns - s * 10_000_000_000)
        for p in latest
        for s in range(60)
    )
    writer.write(lines)
    writer.close()


def api(path: Path, end_ns: int, **settings: object) -> Iterator[tuple[str, Engine]]:
    store = EmbeddedSqliteStore(path)
    engine = Engine(store, config(**settings), ManualClock(start_ns=end_ns))
    with serve(create_app(engine, engine.config)) as url:
        yield url, engine
    store.close()


def test_junk_utilisation_on_3_of_32_gpus_leaves_every_recommendation_and_is_counted(
    own_copy: tuple[Path, int], engine: Engine
) -> None:
    # util_gpu_pct of 1e30 overflowed an int cast in the cap-power fit: no recommendations
    # at all, every read 503 "first refresh has not finished" forever, refit and refresh 500.
    path, end_ns = own_copy
    spoil(path, "gpu", "util_gpu_pct", 1e30)
    for url, _ in api(path, end_ns):
        with httpx.Client(base_url=url, timeout=120) as client:
            assert client.post("/v1/refit", headers=ADMIN).status_code == 200
            assert client.post("/v1/refresh", headers=ADMIN).status_code == 200
            caps = client.get("/v1/recommendations/power-caps", headers=READ).json()
            models = client.get("/v1/models", headers=READ).json()
            metrics = client.get("/metrics", headers=READ).text
    clean = sum(rec.recommended_limit_w is not None for rec in engine.refresh().caps)
    assert caps["count"] == 32 and clean > 3
    assert sum(r["recommended_limit_w"] is not None for r in caps["items"]) >= clean - 3
    assert models["dropped_values"]["gpu.util_gpu_pct"] >= 3
    assert 'wattwise_optimizer_dropped_values_total{field="util_gpu_pct",measurement="gpu"}' in (
        metrics
    )


@pytest.mark.parametrize(
    ("measurement", "field", "value"),
    [
        ("host", "node_power_w", 1e30),
        ("host", "node_power_w", -1e30),
        ("host", "inlet_temp_c", 1e30),
        ("gpu", "temp_c", -1e30),
        ("cooling", "supply_temp_c", 1e30),
    ],
)
def test_junk_telemetry_never_makes_a_published_number_absurd(
    own_copy: tuple[Path, int], measurement: str, field: str, value: float
) -> None:
    # Node power at ±1e30 ranked a candidate at "+2.3e28 W IT, 1.8e28 °C below slowdown";
    # an inlet of 1e30 made cooling publish a predicted inlet of 4.95e29 °C.
    path, end_ns = own_copy
    spoil(path, measurement, field, value, series=2)
    for url, _ in api(path, end_ns):
        with httpx.Client(base_url=url, timeout=120) as client:
            assert client.post("/v1/refresh", headers=ADMIN).status_code == 200
            caps = client.get("/v1/recommendations/power-caps", headers=READ).json()["items"]
            cooling = client.get("/v1/recommendations/cooling", headers=READ).json()["items"]
            placed = client.post("/v1/placement", headers=READ, json={"gpus": 1}).json()
    assert len(caps) == 32 and len(cooling) == 2 and placed["candidates"]
    for rec in caps:
        assert_within(rec["recommended_limit_w"], b.GPU_POWER_W)
    for rec in cooling:
        assert_within(rec["predicted_max_inlet_c"], b.AIR_TEMP_C)
        assert_within(rec["recommended_setpoint_c"], b.COOLANT_TEMP_C)
    for candidate in placed["candidates"]:
        assert_within(candidate["marginal_it_w"], b.symmetric(b.NODE_POWER_W))
        assert_within(candidate["thermal_headroom_c"], b.TEMP_DIFFERENCE_C)


def assert_within(value: float | None, bounds: b.Range) -> None:
    assert value is None or (math.isfinite(value) and bounds[0] <= value <= bounds[1]), value


def scale_stored(registry: Path, kind: str, array: str, factor: float) -> None:
    """Multiply one array of a kept model's newest version (a model fitted on nonsense)."""
    npz = sorted(registry.glob(f"{kind}/*/v*.npz"))[0]
    arrays = dict(np.load(npz))
    arrays[array] = arrays[array] * factor
    with open(npz, "wb") as f:
        np.savez(f, **arrays)


def test_stored_models_that_extrapolate_are_refused_with_a_reason_never_published(
    own_copy: tuple[Path, int], tmp_path: Path
) -> None:
    path, end_ns = own_copy
    registry = tmp_path / "models"
    store = EmbeddedSqliteStore(path)
    Engine(
        store, config(**{"models.registry_dir": str(registry)}), ManualClock(start_ns=end_ns)
    ).refit()
    store.close()
    scale_stored(registry, "inlet", "offset_c", 1e30)
    kept = sorted(registry.glob("gpu_thermal/*/v*.json"))[0]
    stored = json.loads(kept.read_text())
    stored["params"]["r_th_c_per_w"] = -1e25  # GPUs that cool as they draw more
    kept.write_text(json.dumps(stored))
    # A restarted optimizer serves from the kept models until its first refit.
    for url, _ in api(path, end_ns, **{"models.registry_dir": str(registry)}):
        with httpx.Client(base_url=url, timeout=120) as client:
            assert client.post("/v1/refresh", headers=ADMIN).status_code == 200
            cooling = client.get("/v1/recommendations/cooling", headers=READ).json()["items"]
            placed = client.post("/v1/placement?explain=true", headers=READ, json={"gpus": 1})
    refused = [rec for rec in cooling if rec["reason"].startswith("refused")]
    assert refused and "predicted_max_inlet_c" in refused[0]["reason"]
    assert refused[0]["recommended_setpoint_c"] == refused[0]["current_setpoint_c"]
    assert refused[0]["predicted_max_inlet_c"] is None
    assert placed.status_code == 200
    reasons = placed.json()["rejected"].values()
    assert any(r.startswith("refused: thermal_headroom_c") for r in reasons)
    for candidate in placed.json()["candidates"]:
        assert_within(candidate["thermal_headroom_c"], b.TEMP_DIFFERENCE_C)
