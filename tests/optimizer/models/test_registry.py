"""Model registry: every kind round-trips as JSON + npz with increasing versions, and tampered
files are refused without running anything."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.optimizer.h100 import MODEL, h100_phase_series, h100_series, with_sm_activity_stand_in
from tests.optimizer.twin import record, walked_setpoint
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.errors import ModelFileError
from wattwise.optimizer.models.cap_response import fit_cap_models
from wattwise.optimizer.models.codecs import Model, to_state
from wattwise.optimizer.models.node_power import fit_node_power_curves
from wattwise.optimizer.models.power import fit_power_models
from wattwise.optimizer.models.registry import ModelRegistry
from wattwise.optimizer.models.thermal import fit_cooling_models, fit_gpu_thermal, fit_inlet_models
from wattwise.optimizer.models.workload import (
    WorkloadProfile,
    WorkloadProfiles,
    job_profiles,
    profile_set,
)


@pytest.fixture(scope="module")
def models() -> list[Model]:
    h100, _ = h100_series()
    clock = ManualClock()
    fleet = SimFleet(FleetSpec.uniform(4, 2, racks=2, zones=2, seed=2), clock)
    rec = record(fleet, clock, 600, read_every_s=10)
    gpus, hosts = rec.series("gpu"), rec.series("host")
    zones = rec.series("cooling")
    jobs = walked_setpoint()
    return [
        fit_power_models(h100, block_s=10)[MODEL],
        fit_cap_models(h100)[MODEL],
        *fit_gpu_thermal(gpus, hosts).values(),
        *fit_inlet_models(hosts, zones).values(),
        *fit_cooling_models(zones).values(),
        fit_node_power_curves(gpus, hosts),
        profile_set(job_profiles(jobs.jobs, jobs.gpus, fit_cap_models(jobs.gpus))),
    ]


def _same(a: Model, b: Model) -> None:
    params_a, arrays_a = to_state(a)
    params_b, arrays_b = to_state(b)
    assert json.dumps(params_a, sort_keys=True) == json.dumps(params_b, sort_keys=True)
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name])
    assert type(a) is type(b)


def test_every_kind_round_trips_with_its_info(tmp_path: Path, models: list[Model]) -> None:
    registry = ModelRegistry(tmp_path)
    kinds = set()
    for model in models:
        stored = registry.save(model)
        loaded = registry.latest(stored.kind, stored.scope)
        _same(model, loaded)
        assert loaded.info == stored
        assert stored.samples == model.info.samples and stored.errors == model.info.errors
        kinds.add(stored.kind)
    assert kinds == {
        "power", "cap_response", "gpu_thermal", "inlet", "cooling", "node_power", "workload"
    }  # fmt: skip
    assert not list(tmp_path.rglob("*.partial"))


def test_each_refit_gets_the_next_version_and_list_shows_all(
    tmp_path: Path, models: list[Model]
) -> None:
    registry = ModelRegistry(tmp_path)
    power = models[0]
    assert [registry.save(power).version for _ in range(3)] == [1, 2, 3]
    registry.save(models[-2])
    listed = registry.list()
    assert [(i.kind, i.version) for i in listed] == [
        ("node_power", 1), ("power", 1), ("power", 2), ("power", 3)
    ]  # fmt: skip
    assert registry.latest("power", MODEL).info.version == 3
    assert registry.load("power", MODEL, 1).info.version == 1


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no stored power model"):
        ModelRegistry(tmp_path).latest("power", "A100")
    with pytest.raises(ModelFileError, match="unknown model kind"):
        ModelRegistry(tmp_path).latest("pickle", "x")


class _Boom:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _stored(tmp_path: Path, models: list[Model]) -> tuple[ModelRegistry, Path]:
    registry = ModelRegistry(tmp_path)
    info = registry.save(models[0])
    return registry, next(tmp_path.glob(f"power/*/v{info.version}.json"))


def test_npz_with_an_object_array_is_refused_and_runs_nothing(
    tmp_path: Path, models: list[Model]
) -> None:
    registry, path = _stored(tmp_path, models)
    marker = tmp_path / "executed"
    payload = np.empty(1, dtype=object)
    payload[0] = _Boom(marker)
    np.savez(path.with_suffix(".npz"), coef=payload, util_only_coef=np.zeros(2))
    with pytest.raises(ModelFileError, match="arrays refused"):
        registry.latest("power", MODEL)
    assert not marker.exists()


def test_npz_member_that_is_a_raw_pickle_is_refused(tmp_path: Path, models: list[Model]) -> None:
    registry, path = _stored(tmp_path, models)
    marker = tmp_path / "executed"
    with zipfile.ZipFile(path.with_suffix(".npz"), "w") as archive:
        archive.writestr("coef.npy", pickle.dumps(_Boom(marker)))
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(2))
        archive.writestr("util_only_coef.npy", buffer.getvalue())
    with pytest.raises(ModelFileError):
        registry.latest("power", MODEL)
    assert not marker.exists()


def test_npz_with_string_or_missing_arrays_is_refused(tmp_path: Path, models: list[Model]) -> None:
    registry, path = _stored(tmp_path, models)
    np.savez(path.with_suffix(".npz"), coef=np.array(["a", "b"]), util_only_coef=np.zeros(2))
    with pytest.raises(ModelFileError, match="not numeric"):
        registry.latest("power", MODEL)
    np.savez(path.with_suffix(".npz"), coef=np.zeros(7))
    with pytest.raises(ModelFileError, match="arrays"):
        registry.latest("power", MODEL)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(extra_key=1),
        lambda d: d.update(version="1"),
        lambda d: d.update(samples=1.5),
        lambda d: d["params"].update(top_clock_mhz={"__reduce__": "os.system"}),
        lambda d: d["params"].update(envelope_w="low,high"),
        lambda d: d["params"].pop("gpu_model"),
        lambda d: d.update(kind="cooling"),
        lambda d: d.update(errors={"mae_w": "12"}),
    ],
    ids=["unknown-key", "version-str", "samples-float", "nested-object", "envelope-str",
         "missing-param", "other-kind", "error-str"],
)  # fmt: skip
def test_json_with_unexpected_keys_or_types_is_refused(
    tmp_path: Path, models: list[Model], tamper: object
) -> None:
    registry, path = _stored(tmp_path, models)
    document = json.loads(path.read_text())
    assert callable(tamper)
    tamper(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError):
        registry.latest("power", MODEL)


def test_power_model_with_gpm_inputs_round_trips_and_predicts_the_same(tmp_path: Path) -> None:
    series, phases = h100_phase_series(1.0)
    series = with_sm_activity_stand_in(series, phases)
    model = fit_power_models(series, block_s=10)[MODEL]
    assert model.gpm_inputs == ("sm_active_pct",)
    registry = ModelRegistry(tmp_path)
    loaded = registry.latest("power", registry.save(model).scope)
    _same(model, loaded)
    assert isinstance(loaded, type(model))
    np.testing.assert_array_equal(loaded.predict(series), model.predict(series))


def test_power_model_stored_before_the_demand_form_is_refused(
    tmp_path: Path, models: list[Model]
) -> None:
    # A model of the clock-and-capped-share form (7 terms, no NVML-only fit) is not a demand
    # model: refused, so the optimizer waits for its first refit instead of misreading it.
    registry, path = _stored(tmp_path, models)
    document = json.loads(path.read_text())
    for key in ("gpm_inputs", "boosting_errors", "nvml_only_errors"):
        document["params"].pop(key)
    path.write_text(json.dumps(document))
    np.savez(path.with_suffix(".npz"), coef=np.zeros(7), util_only_coef=np.zeros(2))
    with pytest.raises(ModelFileError, match="nvml_coef"):
        registry.latest("power", MODEL)


@pytest.mark.parametrize(
    "arrays",
    [
        {"coef": np.zeros(7), "nvml_coef": np.zeros(5), "util_only_coef": np.zeros(2)},
        {"coef": np.zeros(5), "nvml_coef": np.zeros(4), "util_only_coef": np.zeros(2)},
        {"coef": np.zeros(5), "nvml_coef": np.zeros(5), "util_only_coef": np.zeros(3)},
    ],
    ids=["coef-long", "nvml-short", "util-long"],
)
def test_power_arrays_of_the_wrong_length_are_refused(
    tmp_path: Path, models: list[Model], arrays: dict[str, Any]
) -> None:
    registry, path = _stored(tmp_path, models)
    np.savez(path.with_suffix(".npz"), **arrays)
    with pytest.raises(ModelFileError, match="must have"):
        registry.latest("power", MODEL)


def test_unknown_gpm_input_is_refused(tmp_path: Path, models: list[Model]) -> None:
    registry, path = _stored(tmp_path, models)
    document = json.loads(path.read_text())
    document["params"]["gpm_inputs"] = ["__import__"]
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="unknown GPM inputs"):
        registry.latest("power", MODEL)


def test_json_that_is_not_json_is_refused(tmp_path: Path, models: list[Model]) -> None:
    registry, path = _stored(tmp_path, models)
    path.write_bytes(pickle.dumps({"kind": "power"}))
    with pytest.raises(ModelFileError, match="not a model file"):
        registry.latest("power", MODEL)


def _profile(name: str, kind: str = "job", **values: float) -> WorkloadProfile:
    fields = {"mean_power_w": 512.5, "duty": 0.8, "boundness": 0.25}
    fields.update(values)
    return WorkloadProfile(
        name, kind, "NVIDIA H100 80GB HBM3", gpus=2, samples=40,
        window_start_ns=1_700_000_000_000_000_000, window_end_ns=1_700_000_600_000_000_000,
        cap_sensitivity_pct_per_100w=fields.pop("cap", 3.5), **fields,
    )  # fmt: skip


PROFILES = profile_set(
    {
        p.name: p
        for p in (_profile("slurm-1234"), _profile("träin/α β"), _profile("x", cap=math.nan))
    }
)


def _same_profiles(a: WorkloadProfiles, b: WorkloadProfiles) -> None:
    """Field for field, NaN equal to NaN (a dataclass compares NaN as unequal)."""
    assert list(a) == list(b)
    for name in a:
        left, right = a[name], b[name]
        for field in WorkloadProfile.__slots__:
            x, y = getattr(left, field), getattr(right, field)
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), field


def test_workload_profiles_round_trip_field_for_field(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    stored = registry.save(PROFILES)
    loaded = registry.latest("workload", "fleet")
    assert isinstance(loaded, WorkloadProfiles)
    _same_profiles(PROFILES, loaded)
    assert loaded.info == stored and stored.version == 1
    assert (stored.samples, stored.notes) == (120, "3 job profiles")
    assert (stored.window_start_ns, stored.window_end_ns) == (
        1_700_000_000_000_000_000, 1_700_000_600_000_000_000
    )  # fmt: skip
    empty = registry.load("workload", "fleet", registry.save(profile_set({})).version)
    assert isinstance(empty, WorkloadProfiles) and len(empty) == 0


def _tamper_profiles(tmp_path: Path, change: object) -> ModelRegistry:
    registry = ModelRegistry(tmp_path)
    registry.save(PROFILES)
    path = next(tmp_path.glob("workload/*/v1.npz"))
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert callable(change)
    change(arrays)
    np.savez(path, **arrays)
    return registry


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(name_ends=a["name_ends"] - 1), "end at the last byte"),
        (lambda a: a.update(name_ends=a["name_ends"][::-1].copy()), "must rise"),
        (lambda a: a.update(names_utf8=np.full(a["names_utf8"].size, 0xFF, np.uint8)), "utf-8"),
        (lambda a: a.update(names_utf8=a["names_utf8"].astype(np.int64)), "array of bytes"),
        (lambda a: a.update(name_ends=np.array([1, 2, 3]), names_utf8=np.full(3, 120, np.uint8)),
         "name repeats"),
        (lambda a: a.update(kind_code=np.array([0, 0, 7])), "codes outside"),
        (lambda a: a.update(gpus=a["gpus"].astype(np.float64)), "expected 3 integers"),
        (lambda a: a.update(duty=a["duty"][:2]), "duty must have one value per profile"),
        (lambda a: a.pop("boundness"), "a workload model has"),
    ],
    ids=["ends-short", "ends-fall", "not-utf8", "names-not-bytes", "name-repeats",
         "code-outside", "gpus-float", "duty-short", "array-missing"],
)  # fmt: skip
def test_tampered_workload_profiles_are_refused_with_what_is_wrong(
    tmp_path: Path, change: object, message: str
) -> None:
    registry = _tamper_profiles(tmp_path, change)
    with pytest.raises(ModelFileError, match=message):
        registry.latest("workload", "fleet")


def test_workload_profiles_json_with_codes_that_are_not_strings_is_refused(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    registry.save(PROFILES)
    path = next(tmp_path.glob("workload/*/v1.json"))
    document = json.loads(path.read_text())
    document["params"]["kinds"] = [1]
    path.write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="list of strings"):
        registry.latest("workload", "fleet")
