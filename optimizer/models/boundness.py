"""Memory-boundness μ of a GPU's work, from the activities its telemetry shows.

Time per unit of work under a relative clock ``x`` is ``(1 − μ)/x + μ``. No telemetry measures
μ (NVML gives no throughput), so it is read from the two activities the kernels show while
they run — memory activity ``a_m = util_mem / util_gpu`` and SM activity
``a_c = D / (util_gpu·K_c)`` — as the clock-elasticity of a soft roofline (kernel time
``‖(a_m, a_c/x)‖_p``): ``μ = a_m^p / (a_m^p + a_c^p)``, at most :data:`MAX_BOUNDNESS` — see
docs/models.md for its errors on each workload and why it is capped.
"""

from __future__ import annotations

import numpy as np

from wattwise.optimizer.telemetry import Floats

MAX_BOUNDNESS = 0.97
"""At μ_est → 1 the predicted slowdown vanishes and the cap goes to the lowest clock. Caps
are chosen on the cautious end of μ's range (:mod:`.cap_response`: the clock-following
share ``1 − μ`` widened 1.5–2×), which keeps a misjudged μ near 1 from costing much; at 0.9
memory-bound work (μ 0.95 on the twin) was kept from caps that cost it nothing."""
ROOFLINE_SHARPNESS = 3.0
"""p of the soft roofline: how sharply a kernel's time switches from its SM time to its memory
time. p = 2 blended them too softly: LLM decoding (HBM saturated, SMs 60 % active) came out
at μ 0.74 against the twin's 0.85, and its caps saved 3 points less than the oracle's. No
telemetry measures μ, so p is calibrated on the twin's workloads: 3 is the sharpest (in steps
of 0.5) whose μ stays below the truth for every one of them (an over-estimate under-predicts
the slowdown; an under-estimate only saves less) — docs/models.md has the figures."""


def estimate_boundness(memory_activity: Floats, compute_activity: Floats) -> Floats:
    """Memory-boundness μ from the memory and SM activity of the kernels (each 0..1).

    A kernel's time as a soft maximum of its memory and its SM time, ``‖(a_m, a_c/x)‖_p``
    with p = :data:`ROOFLINE_SHARPNESS`; μ is that time's insensitivity to the clock at the
    top clock, ``a_m^p / (a_m^p + a_c^p)``, capped at :data:`MAX_BOUNDNESS`. Work with no
    activity at all is taken as compute-bound (μ = 0), which predicts the larger slowdown.
    """
    memory = np.clip(memory_activity, 0.0, 1.0) ** ROOFLINE_SHARPNESS
    compute = np.clip(compute_activity, 0.0, 1.0) ** ROOFLINE_SHARPNESS
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(memory + compute > 0, memory / (memory + compute), 0.0)
    return np.asarray(np.minimum(np.nan_to_num(mu, nan=0.0), MAX_BOUNDNESS), dtype=np.float64)


def kernel_activities(
    util_gpu: Floats, util_mem: Floats, dynamic_w: Floats, compute_w: Floats
) -> tuple[Floats, Floats]:
    """Memory and SM activity of the kernels while they run (utilizations 0..1, ``D`` in W)."""
    running = np.maximum(util_gpu, 1e-3)
    memory = np.clip(np.nan_to_num(util_mem, nan=0.0) / running, 0.0, 1.0)
    compute = np.clip(dynamic_w / (running * np.maximum(compute_w, 1.0)), 0.0, 1.0)
    return memory, compute
