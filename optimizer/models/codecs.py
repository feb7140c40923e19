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

from .cap_response import CapResponseModel
from .common import ModelInfo
from .node_power import NodePowerCurves
from .power import PowerModel
from .priors import CapPrior
from .thermal import CoolingModel, GpuThermalModel, InletModel

Params = dict[str, Any]
Arrays = dict[str, np.ndarray]
Model = (
    PowerModel | CapResponseModel | GpuThermalModel | InletModel | CoolingModel | NodePowerCurves
)


def to_state(model: Model) -> tuple[Params, Arrays]:
    """The model's parameters (JSON-safe) and arrays."""
    if isinstance(model, PowerModel):
        return {
            "gpu_model": model.gpu_model,
            "top_clock_mhz": model.top_clock_mhz,
            "idle_power_w": model.idle_power_w,
            "envelope_w": list(model.envelope_w),
            "util_only_errors": dict(model.util_only_errors),
        }, {"coef": model.coef, "util_only_coef": model.util_only_coef}
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
        }, {"offset_c": model.offset_c}
    if isinstance(model, CoolingModel):
        return {
            "zone": model.zone,
            "cop_at_20c": model.cop_at_20c,
            "cop_gain_per_c": model.cop_gain_per_c,
            "gain_source": model.gain_source,
        }, {}
    return {"hosts": list(model.hosts)}, {
        "k0_w": model.k0_w,
        "k1_w": model.k1_w,
        "k2": model.k2,
        "own_shape": model.own_shape.astype(np.bool_),
    }


def _power(p: Params, a: Arrays, info: ModelInfo) -> PowerModel:
    low, high = (float(v) for v in p["envelope_w"])
    return PowerModel(
        gpu_model=str(p["gpu_model"]),
        top_clock_mhz=float(p["top_clock_mhz"]),
        coef=_floats(a["coef"]),
        util_only_coef=_floats(a["util_only_coef"]),
        idle_power_w=float(p["idle_power_w"]),
        envelope_w=(low, high),
        util_only_errors={str(k): float(v) for k, v in dict(p["util_only_errors"]).items()},
        info=info,
    )


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
    return InletModel(str(p["zone"]), hosts, offsets, float(p["recirculation_c_per_kw"]), info)


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


KINDS: Mapping[str, tuple[type, Callable[[Params, Arrays, ModelInfo], Any], tuple[str, ...]]] = {
    "power": (PowerModel, _power, ("coef", "util_only_coef")),
    "cap_response": (CapResponseModel, _cap, ()),
    "gpu_thermal": (GpuThermalModel, _gpu_thermal, ()),
    "inlet": (InletModel, _inlet, ("offset_c",)),
    "cooling": (CoolingModel, _cooling, ()),
    "node_power": (NodePowerCurves, _curves, ("k0_w", "k1_w", "k2", "own_shape")),
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
