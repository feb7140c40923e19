"""What the power-plan applier changed, kept on disk so that it can always be undone.

The state file records, per GPU the applier changed, the limit it set, the limit the
GPU enforced right after, and its default limit; the GPUs it leaves to someone else
(their limit was changed behind its back); when the optimizer last answered; and the
boot it was written in. An applier that was killed before it could restore the
defaults finds its changes here on its next start. GPU limits do not survive a
reboot, so a state file from an earlier boot describes nothing still in force and
is discarded.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.errors import ConfigError, PowerPlanError

log = logging.getLogger(__name__)

DEFAULT_STATE_FILE = Path("/var/lib/wattwise-power-plan/state.json")
"""Not under /var/lib/wattwise: that directory belongs to the agent's own user."""
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
VERSION = 1


def read_boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id ('' where the kernel does not say: reboots then go unnoticed)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Changed:
    """A limit the applier set on a GPU, what the GPU enforced right after, and its default."""

    set_w: float
    enforced_w: float
    """Read back after setting: another enforced limit means someone else changed it."""
    default_w: float


@dataclass
class PlanState:
    boot_id: str = ""
    last_success_ns: int | None = None
    """Wall-clock time of the optimizer's latest plan (measures silence across restarts)."""
    changed: dict[int, Changed] = field(default_factory=dict)
    hands_off: dict[int, float] = field(default_factory=dict)
    """GPUs whose limit someone else changed, with the limit found: left alone while a
    plan caps them."""

    def as_json(self) -> str:
        return json.dumps(
            {
                "version": VERSION,
                "boot_id": self.boot_id,
                "last_success_ns": self.last_success_ns,
                "changed": {
                    str(gpu): {
                        "set_w": c.set_w,
                        "enforced_w": c.enforced_w,
                        "default_w": c.default_w,
                    }
                    for gpu, c in sorted(self.changed.items())
                },
                "hands_off": {str(gpu): w for gpu, w in sorted(self.hands_off.items())},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> PlanState:
        """Parse a state file; ValueError (or KeyError, TypeError) if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} state file")
        last = data["last_success_ns"]
        return cls(
            boot_id=str(data["boot_id"]),
            last_success_ns=None if last is None else int(last),
            changed={
                int(gpu): Changed(float(c["set_w"]), float(c["enforced_w"]), float(c["default_w"]))
                for gpu, c in data["changed"].items()
            },
            hands_off={int(gpu): float(w) for gpu, w in data["hands_off"].items()},
        )


class StateFile:
    """Loads and atomically replaces the state file at ``path``."""

    def __init__(self, path: Path, *, boot_id: Callable[[], str] = read_boot_id) -> None:
        self.path = path
        self._boot_id = boot_id

    def load(self) -> PlanState:
        """The state left by the previous applier of this boot, or a fresh one.

        ConfigError (exit 2) when the file is there but unreadable or not a state file:
        which limits it changed would be lost, so the operator decides.
        """
        boot = self._boot_id()
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return PlanState(boot_id=boot)
        except OSError as e:
            raise ConfigError("--state-file", str(self.path), f"a readable file ({e})") from e
        try:
            state = PlanState.from_json(text)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                "--state-file",
                str(self.path),
                f"a state file of this applier ({e}); check the GPUs' limits with nvidia-smi "
                "and move the file away",
            ) from e
        if state.boot_id != boot:
            if state.changed:
                log.info(
                    "%s is from an earlier boot: the limits it lists were reset by the reboot",
                    self.path,
                )
            return PlanState(boot_id=boot)
        return state

    def save(self, state: PlanState) -> None:
        """Replace the file atomically (write, fsync, rename); PowerPlanError if it cannot."""
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("w") as out:
                out.write(state.as_json() + "\n")
                out.flush()
                os.fsync(out.fileno())
            temporary.replace(self.path)
        except OSError as e:
            raise PowerPlanError(f"cannot write the state file {self.path}: {e}") from e
