"""CPU package energy from RAPL under ``<sysfs>/class/powercap``.

Each CPU package is a zone ``intel-rapl:N`` (AMD packages appear under the same
name on current kernels); its subzones ``intel-rapl:N:M`` (core, uncore, dram)
are parts of the package and are not added again. ``energy_uj`` is a counter
that wraps at ``max_energy_range_uj``. Since the PLATYPUS side channel
(CVE-2020-8694) kernels make ``energy_uj`` readable by root only, so an
unprivileged agent gets PermissionError: the value is then missing and one
warning says how to grant access.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True, slots=True)
class _Zone:
    energy_path: Path
    max_range_uj: int


def counter_delta_uj(previous_uj: int, current_uj: int, max_range_uj: int) -> int:
    """Energy between two counter values, across at most one wrap at ``max_range_uj``."""
    if current_uj >= previous_uj:
        return current_uj - previous_uj
    return max_range_uj - previous_uj + current_uj


class RaplReader:
    """Energy of all CPU packages since the previous call, in joules."""

    def __init__(self, sysfs_root: Path) -> None:
        self._powercap = sysfs_root / "class" / "powercap"
        self._zones: list[_Zone] | None = None
        self._previous_uj: dict[Path, int] = {}
        self._warned_permission = False

    def energy_since_last_j(self) -> float | None:
        """Joules used by all packages since the last call; None on the first call or failure."""
        zones = self._discover()
        if not zones:
            return None
        try:
            current = {zone.energy_path: _read_int(zone.energy_path) for zone in zones}
        except PermissionError:
            self._warn_root_only()
            return None
        except (FileNotFoundError, ValueError):
            # A zone vanished (module reload, hotplug): find the zones again next time.
            self._zones = None
            self._previous_uj.clear()
            return None
        previous, self._previous_uj = self._previous_uj, current
        if previous.keys() != current.keys():
            return None
        total_uj = sum(
            counter_delta_uj(previous[z.energy_path], current[z.energy_path], z.max_range_uj)
            for z in zones
        )
        return total_uj / 1e6

    def _discover(self) -> list[_Zone]:
        if self._zones is None:
            self._zones = []
            if self._powercap.is_dir():
                for zone_dir in sorted(self._powercap.iterdir()):
                    zone = _package_zone(zone_dir)
                    if zone is not None:
                        self._zones.append(zone)
        return self._zones

    def _warn_root_only(self) -> None:
        if self._warned_permission:
            return
        self._warned_permission = True
        log.warning(
            "RAPL energy counters under %s are readable by root only (CVE-2020-8694); "
            "cpu_energy_j and cpu_power_w stay missing. Run the agent as root, or grant "
            "read access with a udev rule or tmpfiles.d entry that sets group/mode on "
            "intel-rapl:*/energy_uj (see docs/sources.md).",
            self._powercap,
        )


def _package_zone(zone_dir: Path) -> _Zone | None:
    if not _PACKAGE_ZONE.match(zone_dir.name):
        return None
    try:
        max_range_uj = _read_int(zone_dir / "max_energy_range_uj")
    except (OSError, ValueError):
        return None
    return _Zone(zone_dir / "energy_uj", max_range_uj)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())
