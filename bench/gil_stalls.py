"""How long a refit and a refresh keep every other thread from running, and why.

Run as ``.venv/bin/python bench/gil_stalls.py`` (``--nodes``, ``--store``,
``--top``). On the fleet bench/api_latency.py builds (8 simulated minutes of
``--nodes`` nodes × 8 GPUs in an embedded store), with the server's settings
(its GIL switch interval, objects frozen after each refresh):

1. **Stalls**: a refit, then a refresh, while a ticker thread sleeps 1 ms in a
   loop and records how late it wakes. A request on the event loop waits as
   long as the ticker does: its lateness is the longest the GIL was held.
2. **Attribution**: the same again with a profile hook on the working thread
   that times every call into C (``sys.setprofile``'s ``c_call``/``c_return``)
   and every garbage collection; each stall is blamed on the shortest such call
   that spans it. Python code itself yields the GIL every switch interval, so a
   stall longer than that is one C call (or a collection).

The hook slows the Python around the C calls, not the calls themselves.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_latency import build_engine, fill

TICK_S = 0.001


@dataclass(frozen=True)
class Stall:
    due: float
    """When the ticker should have woken (perf_counter)."""
    woke: float

    @property
    def late_s(self) -> float:
        return self.woke - self.due


class Ticker:
    """A thread that sleeps ``TICK_S`` in a loop and keeps each wake-up's lateness."""

    def __init__(self) -> None:
        # plain doubles: tens of thousands of objects would lengthen the very
        # collector passes this measures
        self._due = array("d")
        self._woke = array("d")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def stalls(self) -> list[Stall]:
        return [Stall(due, woke) for due, woke in zip(self._due, self._woke, strict=True)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            time.sleep(TICK_S)
            woke = time.perf_counter()
            self._due.append(started + TICK_S)
            self._woke.append(woke)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Call:
    name: str
    where: str
    started: float
    ended: float

    @property
    def took_s(self) -> float:
        return self.ended - self.started


class CallTimer:
    """Times every C call made from Python on this thread, and every collection."""

    def __init__(self, min_s: float = 0.002) -> None:
        self.min_s = min_s
        self.calls: list[Call] = []
        self._open: list[tuple[float, str, str]] = []
        self._gc_started = 0.0
        self._last: tuple[float, str] = (time.perf_counter(), "")

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        now = time.perf_counter()
        here = f"{_short(frame.f_code.co_filename)}:{frame.f_lineno} {frame.f_code.co_name}"
        then, there = self._last
        if now - then >= self.min_s and not self._open:  # no call in C: bytecode or operators
            self.calls.append(Call(f"between events ({event})", f"{there} → {here}", then, now))
        self._last = (now, here)
        if event == "c_call":
            name = getattr(arg, "__qualname__", None) or repr(arg)
            module = getattr(arg, "__module__", None) or type(getattr(arg, "__self__", None))
            self._open.append((now, f"{module}.{name}", here))
        elif event in ("c_return", "c_exception") and self._open:
            started, name, where = self._open.pop()
            if now - started >= self.min_s:
                self.calls.append(Call(name, where, started, now))

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        ended = time.perf_counter()
        if ended - self._gc_started >= self.min_s:
            name = f"gc generation {info['generation']}"
            caller = sys._getframe(1)  # the code whose allocation started the pass
            where = f"{_short(caller.f_code.co_filename)}:{caller.f_lineno} {caller.f_code.co_name}"
            self.calls.append(Call(name, where, self._gc_started, ended))

    @contextmanager
    def timing(self) -> Iterator[None]:
        gc.callbacks.append(self._gc)
        sys.setprofile(self._profile)
        try:
            yield
        finally:
            sys.setprofile(None)
            gc.callbacks.remove(self._gc)

    def blame(self, stall: Stall) -> Call | None:
        """The shortest call that was running through the whole stall."""
        spanning = [
            c for c in self.calls if c.started <= stall.due and c.ended >= stall.woke - 5e-4
        ]
        return min(spanning, key=lambda c: c.took_s, default=None)


def _short(filename: str) -> str:
    for marker in ("/wattwise/", "/site-packages/", "/bench/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class Collections:
    """Every collector pass while measuring: generation → durations."""

    def __init__(self) -> None:
        self.passes: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.passes[info["generation"]].append(time.perf_counter() - self._started)

    @contextmanager
    def counting(self) -> Iterator[None]:
        gc.callbacks.append(self._note)
        try:
            yield
        finally:
            gc.callbacks.remove(self._note)

    def summary(self) -> str:
        return ", ".join(
            f"gen {g}: {len(took)} passes, worst {1e3 * max(took, default=0):.1f} ms"
            for g, took in self.passes.items()
        )


def measure(name: str, work: Callable[[], object], timer: CallTimer | None) -> list[Stall]:
    gc.collect()
    collections = Collections()
    with Ticker() as ticker, collections.counting():
        time.sleep(0.05)
        started = time.perf_counter()
        if timer is None:
            work()
        else:
            with timer.timing():
                work()
        took = time.perf_counter() - started
    stalls = sorted(ticker.stalls, key=lambda s: s.late_s, reverse=True)
    over = {ms: sum(1 for s in stalls if s.late_s > ms / 1e3) for ms in (5, 20, 50, 100)}
    print(
        f"{name}: {took:.1f} s; ticker woke {len(stalls)} times, worst "
        f"{1e3 * stalls[0].late_s:.1f} ms late; late by more than "
        + ", ".join(f"{ms} ms: {n}" for ms, n in over.items())
        + f"\n  collector: {collections.summary()}",
        flush=True,
    )
    return stalls


def report(stalls: list[Stall], timer: CallTimer, top: int) -> None:
    for stall in stalls[:top]:
        call = timer.blame(stall)
        blamed = f"{call.name} ({1e3 * call.took_s:.0f} ms) at {call.where}" if call else "?"
        print(f"  {1e3 * stall.late_s:7.1f} ms  {blamed}")
    passes = sorted((c for c in timer.calls if c.name.startswith("gc ")), key=lambda c: -c.took_s)
    for call in passes[:3]:
        print(f"  longest collector passes: {call.name} {1e3 * call.took_s:.1f} ms at {call.where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="stalls to attribute")
    parser.add_argument(
        "--store",
        type=Path,
        help="reuse a store an earlier run filled (its end time is kept in STORE.end_ns)",
    )
    args = parser.parse_args()
    if args.store is not None and args.store.exists():
        store, end_ns = args.store, int(args.store.with_suffix(".end_ns").read_text())
    else:
        store, end_ns = fill(args.nodes)
        if args.store is not None:
            store.rename(args.store)
            store = args.store
            store.with_suffix(".end_ns").write_text(str(end_ns))
    engine, _app = build_engine(store, end_ns)  # the server's settings; first refit+refresh
    print(f"switch interval {1e3 * sys.getswitchinterval():.1f} ms, tick {1e3 * TICK_S:.0f} ms")
    measure("nothing (the machine's own noise)", lambda: time.sleep(5.0), None)
    for name, work in (("refit", engine.refit), ("refresh", engine.refresh)):
        measure(name, work, None)
    print("\nattributed (profile hook on; durations are the hooked run's):")
    for name, work in (("refit", engine.refit), ("refresh", engine.refresh)):
        timer = CallTimer()
        report(measure(name, work, timer), timer, args.top)


if __name__ == "__main__":
    main()
