"""The power-plan applier: the optimizer's caps for this node, set and undone through NVML.

Each pass asks the optimizer for the plan (:mod:`wattwise.agent.power_plan`), gives
every capped GPU the lowest planned limit (clamped to its range), and puts every GPU
it changed that no plan caps any more back to its default limit. GPUs it never
changed are never touched unless a plan caps them. Rules that keep it safe:

* Silence: when the optimizer has given no plan for ``silent_after_s``, every GPU
  the applier changed goes back to its default limit; the next plan applies again.
* Stopping (SIGTERM, ``systemctl stop``, an error) restores the defaults too: an
  applier that is not running leaves no limit changed. A killed one leaves its
  state file (:mod:`wattwise.agent.power_state`), from which the next start
  undoes what it set; a reboot resets every limit by itself.
* Never fight the operator: a GPU whose enforced limit is no longer the one the
  applier read back after setting it was changed by someone else; it is left
  alone (and logged) until no plan caps it.
* Dry run: every pass prints what it would do and changes nothing, state included.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from wattwise.agent.power_limits import GpuLimits, PowerLimits
from wattwise.agent.power_plan import PlannedCap, PlanSource, Target, decide
from wattwise.agent.power_state import Changed, PlanState, StateFile
from wattwise.clock import Clock
from wattwise.errors import PowerLimitError, PowerPlanError

log = logging.getLogger(__name__)

SAME_W = 0.5
"""Limits closer than this are the same (NVML keeps milliwatts; plans may carry fractions)."""


def same(a: float, b: float) -> bool:
    return abs(a - b) < SAME_W


class PowerPlanApplier:
    """Applies this node's plan once per :meth:`cycle`; :meth:`run` repeats until stopped."""

    def __init__(
        self,
        source: PlanSource,
        limits: PowerLimits,
        state_file: StateFile,
        *,
        clock: Clock,
        interval_s: float = 60.0,
        silent_after_s: float = 600.0,
        dry_run: bool = False,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.source = source
        self.limits = limits
        self.state_file = state_file
        self.clock = clock
        self.interval_s = interval_s
        self.silent_after_s = silent_after_s
        self.dry_run = dry_run
        self.echo = echo
        self.state: PlanState = state_file.load()
        self._problems: dict[str, str] = {}
        # Silence counts from the last plan any applier of this boot got, else from now.
        now = clock.monotonic()
        last = self.state.last_success_ns
        ago_s = 0.0 if last is None else max(0.0, (clock.time_ns() - last) / 1e9)
        self._last_ok = now - ago_s

    def run(self, stop: threading.Event) -> None:
        """A pass every ``interval_s`` until ``stop`` is set; then the defaults go back."""
        try:
            due = self.clock.monotonic()
            while not self.clock.sleep_until(due, stop):
                self.cycle()
                now = self.clock.monotonic()
                while due <= now:
                    due += self.interval_s
        finally:
            self.restore_all("the applier is stopping")

    def cycle(self) -> bool:
        """One pass; False when the plan could not be fetched or a limit could not be set."""
        try:
            caps = self.source.fetch()
        except PowerPlanError as e:
            self._problem("plan", str(e))
            silent_s = self.clock.monotonic() - self._last_ok
            if silent_s >= self.silent_after_s and self.state.changed:
                why = f"the optimizer has given no plan for {silent_s:.0f} s"
                self.restore_all(why, level=logging.WARNING)
            return False
        self._solved("plan", "the optimizer answers again")
        self._last_ok = self.clock.monotonic()
        self.state.last_success_ns = self.clock.time_ns()
        ok = self._apply(caps)
        self._save()
        return ok

    def restore_all(self, why: str, *, level: int = logging.INFO) -> bool:
        """Every GPU this applier changed back to its default limit (unless changed since)."""
        if not self.state.changed:
            return True
        if not self.dry_run:
            log.log(level, "restoring the default limits: %s", why)
        ok = True
        for gpu in sorted(self.state.changed):
            limits = self._read(gpu)
            if limits is None:
                ok = False
            elif self._still_mine(gpu, limits, keep_hands_off=True):
                ok &= self._set(gpu, limits, self.state.changed[gpu].default_w, why)
        self._save()
        return ok

    # --- one pass ---------------------------------------------------------------

    def _apply(self, caps: list[PlannedCap]) -> bool:
        try:
            indices = self.limits.gpus()
        except PowerLimitError as e:
            self._problem("gpus", str(e))
            return False
        self._solved("gpus", "NVML lists the GPUs again")
        found = {gpu: self._read(gpu) for gpu in indices}
        gpus = {gpu: limits for gpu, limits in found.items() if limits is not None}
        decision = decide(caps, gpus)
        refused = {f"refused{c.gpu}": c for c in decision.refused if c.gpu not in found}
        for key in [k for k in self._problems if k.startswith("refused") and k not in refused]:
            del self._problems[key]  # no longer in the plan
        for key, cap in refused.items():
            self._problem(
                key, f"{cap.scope} caps gpu{cap.gpu}, which this node does not have: cap refused"
            )
        for gone in set(self.state.changed) - set(indices):
            log.warning("gpu%d is gone from this node: forgetting the limit set on it", gone)
            del self.state.changed[gone]
        for gpu in set(self.state.hands_off) - set(decision.targets):
            log.info("gpu%d: no plan caps it any more; the applier manages it again", gpu)
            del self.state.hands_off[gpu]
        ok = len(gpus) == len(found)
        for gpu, limits in sorted(gpus.items()):
            ok &= self._apply_gpu(gpu, limits, decision.targets.get(gpu))
        return ok

    def _apply_gpu(self, gpu: int, limits: GpuLimits, target: Target | None) -> bool:
        mine = self.state.changed.get(gpu)
        if mine is not None and not self._still_mine(
            gpu, limits, keep_hands_off=target is not None
        ):
            return True
        now = f"{limits.enforced_w:g} W"
        if gpu in self.state.hands_off:
            self._say(f"gpu{gpu}: stays at {now}, set by someone else while a plan caps it")
            return True
        if target is None:
            if mine is not None:
                return self._set(gpu, limits, mine.default_w, "no plan caps it any more")
            self._say(f"gpu{gpu}: stays at {now}: no plan caps it")
            return True
        if mine is not None and same(mine.set_w, target.limit_w):
            self._say(f"gpu{gpu}: stays at {now}, as this applier set it")
            return True
        if mine is None and same(limits.enforced_w, target.limit_w):
            self._say(f"gpu{gpu}: stays at {now}, the planned limit already")
            return True
        why = f"the lowest planned limit ({', '.join(target.scopes)})"
        if not same(target.limit_w, target.planned_w):
            why += f", {target.planned_w:g} W clamped to {limits.min_w:g}–{limits.max_w:g} W"
        return self._set(gpu, limits, target.limit_w, why)

    def _still_mine(self, gpu: int, limits: GpuLimits, *, keep_hands_off: bool) -> bool:
        """False (and forgotten) when someone else changed the limit this applier set."""
        mine = self.state.changed[gpu]
        if same(limits.enforced_w, mine.enforced_w):
            return True
        log.warning(
            "gpu%d enforces %g W, not the %g W this applier left it at: someone else changed "
            "it; leaving it alone",
            gpu,
            limits.enforced_w,
            mine.enforced_w,
        )
        del self.state.changed[gpu]
        if keep_hands_off:
            self.state.hands_off[gpu] = limits.enforced_w
        return False

    def _set(self, gpu: int, limits: GpuLimits, watts: float, why: str) -> bool:
        restoring = same(watts, limits.default_w)
        verb = "restore its default" if restoring else "set"
        if self.dry_run:
            self.echo(f"gpu{gpu}: would {verb} {watts:g} W (now {limits.enforced_w:g} W): {why}")
            return True
        try:
            enforced = self.limits.set_limit(gpu, watts)
        except PowerLimitError as e:
            self._problem(f"gpu{gpu}", f"cannot set {watts:g} W: {e}")
            return False
        self._solved(f"gpu{gpu}", f"gpu{gpu}: its limit can be set again")
        log.info("gpu%d: %s %g W (was %g W): %s", gpu, verb, watts, limits.enforced_w, why)
        if not same(enforced, watts):
            log.warning(
                "gpu%d enforces %g W after %g W was set: another limiter is lower",
                gpu,
                enforced,
                watts,
            )
        if restoring:
            self.state.changed.pop(gpu, None)
        else:
            self.state.changed[gpu] = Changed(watts, enforced, limits.default_w)
        return True

    # --- helpers ------------------------------------------------------------------

    def _read(self, gpu: int) -> GpuLimits | None:
        try:
            limits = self.limits.limits(gpu)
        except PowerLimitError as e:
            self._problem(f"read{gpu}", str(e))
            return None
        self._solved(f"read{gpu}", f"gpu{gpu}: limits readable again")
        return limits

    def _save(self) -> None:
        if self.dry_run:
            return
        try:
            self.state_file.save(self.state)
        except PowerPlanError as e:
            self._problem("state", str(e))
        else:
            self._solved("state", f"the state file {self.state_file.path} is written again")

    def _say(self, line: str) -> None:
        """What a dry run prints for a GPU it would leave as it is."""
        if self.dry_run:
            self.echo(line)

    def _problem(self, key: str, message: str) -> None:
        """Log a problem when it starts or changes, not on every pass."""
        if self._problems.get(key) != message:
            log.error("%s", message)
            self._problems[key] = message

    def _solved(self, key: str, message: str) -> None:
        if self._problems.pop(key, None) is not None:
            log.warning("%s", message)
