"""XID errors: what the common codes mean, and which ones say a GPU is about to fail.

The driver reports an XID (an error code in the kernel log, and an NVML
``nvmlEventTypeXidCriticalError`` event) when something went wrong on a GPU.
Many are the application's own fault (13, 31, 43); the ones in
:data:`FATAL_XIDS` mean the GPU itself needs a reset, a drain or a replacement:
placement and caps leave such a GPU alone (``wattwise.optimizer.recommend.health``)
and the alert rules page on them. Meanings follow NVIDIA's XID catalog.
"""

from __future__ import annotations

XID_MEANINGS: dict[int, str] = {
    8: "GPU stopped processing (timeout)",
    13: "graphics engine exception (usually the application)",
    31: "GPU memory page fault (usually the application)",
    32: "invalid or corrupted push buffer stream",
    38: "driver firmware error",
    43: "GPU stopped processing (usually the application)",
    45: "preemptive cleanup after earlier errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "row remapping or page retirement recorded (reset pending)",
    64: "row remapping or page retirement failed",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}

FATAL_XIDS = frozenset({48, 63, 64, 74, 79, 94, 95})
"""Codes after which a GPU should get no new work until someone has looked at it."""


def xid_meaning(code: int) -> str:
    """A short meaning for ``code``, or a pointer to the catalog for the rare ones."""
    return XID_MEANINGS.get(code, "see NVIDIA's XID catalog")
