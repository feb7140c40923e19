"""Each model kind as plain state: JSON-safe parameters plus numeric arrays, and back.

The registry stores exactly this and nothing else — no pickles, no class names to
import — so a file can only ever become one of the kinds listed in :data:`KINDS`,
built field by field with explicit conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from wattwise.optimizer.models.cap_response import CapResponseModel
from wattwise.optimizer.models.common import ModelInfo
from wattwise.optimizer.models.node_power import NodePowerCurves
from wattwise.optimizer.models.power import GPM_COLUMNS, NVML_TERMS, PowerModel
from wattwise.optimizer.models.priors import CapPrior
from wattwise.optimizer.models.thermal import CoolingModel, GpuThermalModel, InletModel
from wattwise.optimizer.models.workload import WorkloadProfile, WorkloadProfiles

Params = dict[str, Any]
Arrays = dict[str, np.ndarray]
Model = (
    PowerModel
    | CapResponseModel
    | GpuThermalModel
    | InletModel
    | CoolingModel
    | NodePowerCurves
    | WorkloadProfiles
)
_PROFILE_FLOATS = ("mean_power_w", "duty", "boundness", "cap_sensitivity_pct_per_100w")
_PROFILE_INTS = ("gpus", "samples", "window_start_ns", "window_end_ns")
_PROFILE_CODES = ("kind_code", "gpu_model_code")
_PROFILE_ARRAYS = ("names_utf8", "name_ends", *_PROFILE_CODES, *_PROFILE_INTS, *_PROFILE_FLOATS)


def to_state(model: Model) -> tuple[Params, Arrays]:
    """The model's parameters (JSON-safe) and arrays."""
    if isinstance(model, PowerModel):
        return {
            "gpu_model": model.gpu_model,
            "top_clock_mhz": model.top_clock_mhz,
            "idle_power_w": model.idle_power_w,
            "envelope_w": list(model.envelope_w),
            "gpm_inputs": list(model.gpm_inputs),
            "util_only_errors": dict(model.util_only_errors),
            "boosting_errors": dict(model.boosting_errors),
            "nvml_only_errors": dict(model.nvml_only_errors),
        }, {
            "coef": model.coef,
            "nvml_coef": model.nvml_coef,
            "util_only_coef": model.util_only_coef,
        }
    if isinstance(model, CapResponseModel):
        prior = asdict(model.prior)
        return {"gpu_model": model.gpu_model, "source": model.voltage_floor_source, **prior}, {}
    if isinstance(model, GpuThermalModel):
        return {
            "gpu_model": model.gpu_model,
            "offset_c": model.offset_c,
            "r_th_c_per_w": model.r_th_c_per_w,
        }, {}
    if isinstance(model, InletModel):
        return {
            "zone": model.zone,
            "hosts": list(model.hosts),
            "recirculation_c_per_kw": model.recirculation_c_per_kw,
            **_optional_lists(
                rack_recirculation_c_per_kw=model.rack_recirculation_c_per_kw,
                peak_rack_power_w=model.peak_rack_power_w,
            ),
        }, {"offset_c": model.offset_c}
    if isinstance(model, CoolingModel):
        return {
            "zone": model.zone,
            "cop_at_20c": model.cop_at_20c,
            "cop_gain_per_c": model.cop_gain_per_c,
            "gain_source": model.gain_source,
        }, {}
    if isinstance(model, WorkloadProfiles):
        return _profiles_state(model)
    return {"hosts": list(model.hosts)}, {
        "k0_w": model.k0_w,
        "k1_w": model.k1_w,
        "k2": model.k2,
        "own_shape": model.own_shape.astype(np.bool_),
    }


def _power(p: Params, a: Arrays, info: ModelInfo) -> PowerModel:
    low, high = (float(v) for v in p["envelope_w"])
    gpm = tuple(_strings(p["gpm_inputs"]))
    unknown = set(gpm) - set(GPM_COLUMNS)
    if unknown:
        raise ValueError(f"unknown GPM inputs {sorted(unknown)}")
    coef, nvml_coef = _floats(a["coef"]), _floats(a["nvml_coef"])
    if coef.shape != (len(NVML_TERMS) + len(gpm),) or nvml_coef.shape != (len(NVML_TERMS),):
        raise ValueError("coef must have one value per term and nvml_coef one per NVML term")
    util_only = _floats(a["util_only_coef"])
    if util_only.shape != (2,):
        raise ValueError("util_only_coef must have an intercept and a slope")
    return PowerModel(
        gpu_model=str(p["gpu_model"]),
        top_clock_mhz=float(p["top_clock_mhz"]),
        gpm_inputs=gpm,
        coef=coef,
        nvml_coef=nvml_coef,
        util_only_coef=util_only,
        idle_power_w=float(p["idle_power_w"]),
        envelope_w=(low, high),
        util_only_errors=_errors(p["util_only_errors"]),
        boosting_errors=_errors(p["boosting_errors"]),
        nvml_only_errors=_errors(p["nvml_only_errors"]),
        info=info,
    )


def _errors(values: object) -> dict[str, float]:
    if not isinstance(values, dict):
        raise TypeError("expected a mapping of error names to numbers")
    return {str(k): float(v) for k, v in values.items()}


def _cap(p: Params, a: Arrays, info: ModelInfo) -> CapResponseModel:
    # Models stored before a field existed take that field's default.
    fields = CapPrior.__dataclass_fields__
    prior = CapPrior(**{f: float(p[f]) for f in fields if f in p})
    return CapResponseModel(str(p["gpu_model"]), prior, str(p["source"]), info)


def _gpu_thermal(p: Params, a: Arrays, info: ModelInfo) -> GpuThermalModel:
    return GpuThermalModel(
        str(p["gpu_model"]), float(p["offset_c"]), float(p["r_th_c_per_w"]), info
    )


def _inlet(p: Params, a: Arrays, info: ModelInfo) -> InletModel:
    hosts = tuple(_strings(p["hosts"]))
    offsets = _floats(a["offset_c"])
    if offsets.shape != (len(hosts),):
        raise ValueError("offset_c must have one value per host")
    # Models stored before racks had their own slope and peak power have neither.
    per_host = {k: _per_host(p.get(k), len(hosts), k) for k in _INLET_PER_HOST}
    return InletModel(
        str(p["zone"]), hosts, offsets, float(p["recirculation_c_per_kw"]), info, **per_host
    )


_INLET_PER_HOST = ("rack_recirculation_c_per_kw", "peak_rack_power_w")


def _optional_lists(**arrays: np.ndarray | None) -> Params:
    return {k: [float(v) for v in a] for k, a in arrays.items() if a is not None}


def _per_host(values: object, hosts: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    out = _floats(np.asarray(values, dtype=np.float64))
    if out.shape != (hosts,):
        raise ValueError(f"{name} must have one value per host")
    return out


def _cooling(p: Params, a: Arrays, info: ModelInfo) -> CoolingModel:
    return CoolingModel(
        str(p["zone"]),
        float(p["cop_at_20c"]),
        float(p["cop_gain_per_c"]),
        str(p["gain_source"]),
        info,
    )


def _curves(p: Params, a: Arrays, info: ModelInfo) -> NodePowerCurves:
    hosts = tuple(_strings(p["hosts"]))
    k0, k1, k2 = _floats(a["k0_w"]), _floats(a["k1_w"]), _floats(a["k2"])
    own = np.asarray(a["own_shape"], dtype=np.bool_)
    if not k0.shape == k1.shape == k2.shape == own.shape == (len(hosts),):
        raise ValueError("curve arrays must have one value per host")
    return NodePowerCurves(hosts, k0, k1, k2, own, info)


def _profiles_state(model: WorkloadProfiles) -> tuple[Params, Arrays]:
    """Names as one UTF-8 byte array cut at ``name_ends`` and the repeated strings as codes:
    numbers only in the ``.npz``, and a JSON as small as the other kinds' however many jobs."""
    profiles = list(model.values())
    encoded = [p.name.encode() for p in profiles]
    params = {"kinds": sorted({p.kind for p in profiles})}
    params["gpu_models"] = sorted({p.gpu_model for p in profiles})
    arrays: Arrays = {
        "names_utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "name_ends": np.cumsum([len(e) for e in encoded], dtype=np.int64),
        "kind_code": _coded([p.kind for p in profiles], params["kinds"]),
        "gpu_model_code": _coded([p.gpu_model for p in profiles], params["gpu_models"]),
    }
    for name in _PROFILE_INTS:
        arrays[name] = np.array([getattr(p, name) for p in profiles], dtype=np.int64)
    for name in _PROFILE_FLOATS:
        arrays[name] = np.array([getattr(p, name) for p in profiles], dtype=np.float64)
    return params, arrays


def _coded(values: list[str], distinct: list[str]) -> np.ndarray:
    # The narrowest unsigned type: one byte per profile for a fleet of a few GPU models.
    code = {value: i for i, value in enumerate(distinct)}
    width = np.min_scalar_type(max(len(distinct) - 1, 0))
    return np.array([code[v] for v in values], dtype=width)


def _profiles(p: Params, a: Arrays, info: ModelInfo) -> WorkloadProfiles:
    names = _names(a["names_utf8"], a["name_ends"])
    columns: dict[str, list[Any]] = {
        "name": names,
        "kind": _decoded(_ints(a["kind_code"], len(names)), _strings(p["kinds"])),
        "gpu_model": _decoded(_ints(a["gpu_model_code"], len(names)), _strings(p["gpu_models"])),
    }
    for name in _PROFILE_INTS:
        columns[name] = _ints(a[name], len(names)).tolist()
    for name in _PROFILE_FLOATS:
        values = _floats(a[name])
        if values.shape != (len(names),):
            raise ValueError(f"{name} must have one value per profile")
        columns[name] = values.tolist()
    # Columns in the class's field order, built positionally: a fleet-day has ~600,000.
    built = map(WorkloadProfile, *(columns[f] for f in WorkloadProfile.__slots__))
    return WorkloadProfiles(dict(zip(names, built, strict=True)), info)


KINDS: Mapping[str, tuple[type, Callable[[Params, Arrays, ModelInfo], Any], tuple[str, ...]]] = {
    "power": (PowerModel, _power, ("coef", "nvml_coef", "util_only_coef")),
    "cap_response": (CapResponseModel, _cap, ()),
    "gpu_thermal": (GpuThermalModel, _gpu_thermal, ()),
    "inlet": (InletModel, _inlet, ("offset_c",)),
    "cooling": (CoolingModel, _cooling, ()),
    "node_power": (NodePowerCurves, _curves, ("k0_w", "k1_w", "k2", "own_shape")),
    "workload": (WorkloadProfiles, _profiles, _PROFILE_ARRAYS),
}
"""kind → (class, builder from state, the arrays it needs)."""


def from_state(kind: str, params: Params, arrays: Arrays, info: ModelInfo) -> Model:
    """Rebuild a model; ``ValueError`` when the state does not describe one of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    _, build, needed = KINDS[kind]
    if set(arrays) != set(needed):
        raise ValueError(f"arrays {sorted(arrays)} but a {kind} model has {sorted(needed)}")
    try:
        model: Model = build(params, arrays, info)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{kind} parameters are incomplete or of the wrong type: {e}") from e
    return model


def with_info(model: Model, info: ModelInfo) -> Model:
    return replace(model, info=info)


def _floats(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "fiu":
        raise ValueError(f"expected a numeric array, got {values.dtype}")
    return np.asarray(values, dtype=np.float64)


def _strings(values: object) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError("expected a list of strings")
    return list(values)


def _ints(values: np.ndarray, count: int) -> np.ndarray:
    if values.dtype.kind not in "iu" or values.shape != (count,):
        raise ValueError(f"expected {count} integers, got {values.dtype} of shape {values.shape}")
    return np.asarray(values, dtype=np.int64)


def _names(utf8: np.ndarray, ends: np.ndarray) -> list[str]:
    """The names cut out of one UTF-8 byte array; refused unless the cuts cover it exactly,
    in order, and no name repeats (a dict would silently keep only one)."""
    if utf8.dtype != np.uint8 or utf8.ndim != 1:
        raise ValueError("names_utf8 must be a 1-D array of bytes")
    ends = _ints(ends, ends.size)
    starts = np.concatenate(([0], ends))[:-1]
    if np.any(ends < starts) or (ends[-1] if ends.size else 0) != utf8.size:
        raise ValueError("name_ends must rise and end at the last byte")
    text = utf8.tobytes()
    names = [text[s:e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    if len(set(names)) != len(names):
        raise ValueError("a profile name repeats")
    return names


def _decoded(codes: np.ndarray, values: list[str]) -> list[str]:
    if codes.size and (codes.min() < 0 or codes.max() >= len(values)):
        raise ValueError(f"codes outside the {len(values)} listed values")
    return [values[c] for c in codes.tolist()]
