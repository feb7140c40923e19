"""Keep the API's tail latency free of stalls the request path did not cause.

Two stalls dominate once a read costs ~0.1 ms (docs/benchmarks.md, "API latency"):

- **Full garbage collections.** After a refit the process holds ~115,000 tracked
  objects (recommendations, GPU states, workload profiles, FastAPI's own); a
  full pass over them holds the GIL for 100–170 ms on the benchmark machine,
  and every request in flight waits. The engine's objects live until the next
  refresh replaces them, so they are moved out of the collector's reach
  (``gc.freeze``) each time a snapshot is installed; the pass that precedes it
  only sees what was created since the last one.
- **The GIL held by a refresh or refit.** They run on the scheduler's threads
  (never the event loop), but a thread that wants the GIL back waits up to the
  interpreter's switch interval, 5 ms by default, and a request needs it
  several times. A shorter interval bounds that wait; the refresh pays a few
  more switches. No interval interrupts a single call into C, so the stores
  convert their answers a chunk of rows at a time (``store/frames.py``), and
  full collections wait for :data:`FULL_PASS_EVERY` young ones.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from wattwise.optimizer.service.engine import Snapshot
from wattwise.optimizer.service.metrics import ServiceMetrics

SWITCH_INTERVAL_S = 0.0001
"""How long a running thread keeps the GIL while another waits (CPython's default: 5 ms).

A request gives up the GIL at every socket call and waits up to this long to get it
back from a running refresh; at 0.5 ms polled placements while refreshes ran had p99
326 ms, at 0.1 ms 134 ms, with the same refresh time (docs/benchmarks.md)."""

FULL_PASS_EVERY = 100
"""Young-generation passes between automatic full ones (CPython's default: 10).

Freezing empties the old generation, so CPython's other condition for a full
pass (old objects pending > a quarter of those counted at the last one) holds
all through a refresh, and the default ran one every 10 young passes: six per
refresh at 1,000 nodes, 20–70 ms each, walking objects the refresh still uses.
At 100 a refresh (~60 young passes) runs at most one, and :meth:`GcPauses.settle`
still collects every cycle once per snapshot."""


class GcPauses:
    """Times every collection into ``metrics`` and freezes the engine's objects per snapshot."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self._started: float | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self._switch_interval_s: float | None = None

    def install(
        self,
        switch_interval_s: float = SWITCH_INTERVAL_S,
        full_pass_every: int = FULL_PASS_EVERY,
    ) -> None:
        """Process-wide settings: call once, from whatever owns the process (the server)."""
        self._switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(switch_interval_s)
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self._thresholds[0], self._thresholds[1], full_pass_every)
        gc.callbacks.append(self._note)

    def uninstall(self) -> None:
        if self._note in gc.callbacks:
            gc.callbacks.remove(self._note)
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
        if self._switch_interval_s is not None:
            sys.setswitchinterval(self._switch_interval_s)
            self._switch_interval_s = None

    def settle(self, snapshot: Snapshot) -> None:
        """An engine listener: collect what the refresh left behind, then freeze the rest.

        Frozen objects are still freed when nothing refers to them (reference
        counting); only cycles among them would wait for the next unfreeze, and
        a refresh or refit leaves none (tests/optimizer/service/test_latency.py).
        """
        gc.collect()
        gc.freeze()

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            took = time.perf_counter() - self._started
            self.metrics.gc_pauses.labels(str(info["generation"])).observe(took)
            self._started = None
