"""Which GPUs are about to fail, so that no recommendation sends work to them.

A GPU is unhealthy while a row remapping waits for its reset or has failed
(``remapped_rows_pending``/``remapped_rows_failed`` in its newest sample), or
when it reported a fatal XID (:data:`~wattwise.collector.xid.FATAL_XIDS`: double-bit
and uncontained ECC errors, row-remap events, NVLink errors, off the bus) within
``xid_window_s``. Placement leaves such GPUs out of the free ones and says why in
``rejected``; caps refuse them with the same reason (:func:`reason`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from wattwise.collector.xid import FATAL_XIDS, xid_meaning
from wattwise.optimizer.telemetry import GpuState, Series

GpuKey = tuple[str, int]
"""(host, GPU index)."""


class HealthSettings(BaseModel):
    """``[health]``: what keeps a GPU out of placement and caps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    xid_window_s: float = Field(3600.0, gt=0, description="how long a fatal XID counts")
    fatal_xids: tuple[int, ...] = Field(
        tuple(sorted(FATAL_XIDS)), description="XID codes after which a GPU gets no new work"
    )


def unhealthy_gpus(
    gpus: Sequence[GpuState], xids: Series, now_ns: int, settings: HealthSettings
) -> dict[GpuKey, str]:
    """(host, GPU) → why the GPU should get no new work, for every unhealthy GPU.

    ``xids`` is the store's ``gpu_xid`` series (events older than ``xid_window_s`` are
    left out here too).
    """
    out: dict[GpuKey, str] = {}
    for gpu in gpus:
        if _set(gpu.remapped_rows_failed):
            out[(gpu.host, gpu.gpu)] = "row remapping failed (XID 64): replace the GPU"
        elif _set(gpu.remapped_rows_pending):
            out[(gpu.host, gpu.gpu)] = "row remapping pending: drain and reset the GPU"
    fatal = set(settings.fatal_xids)
    since_ns = now_ns - int(settings.xid_window_s * 1e9)
    newest: dict[GpuKey, tuple[int, int]] = {}
    hosts, indices, codes = xids.tags.get("host"), xids.tags.get("gpu"), xids.tags.get("xid")
    if hosts is None or indices is None or codes is None:
        return out
    counts = xids.values.get("count", np.zeros(len(xids)))
    rows = zip(
        hosts.tolist(),
        indices.tolist(),
        codes.tolist(),
        xids.time_ns.tolist(),
        counts.tolist(),
        strict=True,
    )
    for host, index, code, time_ns, count in rows:
        number = int(code) if str(code).isdigit() else -1
        recent = time_ns >= since_ns
        if number in fatal and count > 0 and recent and str(index).isdigit():
            key = (str(host), int(index))
            if key not in newest or time_ns > newest[key][1]:
                newest[key] = (number, int(time_ns))
    for key, (code, time_ns) in newest.items():
        minutes = max(0.0, (now_ns - time_ns) / 60e9)
        text = f"XID {code} ({xid_meaning(code)}) in the last {math.ceil(minutes) or 1} min"
        out[key] = f"{out[key]}; {text}" if key in out else text
    return out


def reason(unhealthy: Mapping[GpuKey, str], host: str, gpu: int) -> str | None:
    """Why GPU ``gpu`` of ``host`` gets no new work, or None: the call caps make."""
    found = unhealthy.get((host, gpu))
    return None if found is None else f"GPU unhealthy: {found}"


def node_notes(
    hosts: np.ndarray, gpu_node: np.ndarray, gpu_index: np.ndarray, gpu_health: np.ndarray
) -> dict[str, str]:
    """Host → its unhealthy GPUs in words, for the nodes that have any."""
    notes: dict[str, list[str]] = {}
    for row in np.flatnonzero(gpu_health != "").tolist():
        host = str(hosts[gpu_node[row]])
        notes.setdefault(host, []).append(f"GPU {int(gpu_index[row])}: {gpu_health[row]}")
    return {host: "; ".join(found) for host, found in notes.items()}


def annotated(rejected: dict[str, str], notes: Mapping[str, str]) -> dict[str, str]:
    """``rejected`` with each unhealthy node's GPUs named after the reason it failed."""
    return {
        host: f"{why} (unhealthy {notes[host]})" if host in notes else why
        for host, why in rejected.items()
    }


def _set(flag: float) -> bool:
    return math.isfinite(flag) and flag >= 1.0
