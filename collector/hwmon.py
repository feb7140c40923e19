"""CPU package temperature from hwmon under ``<sysfs>/class/hwmon``.

Chips named ``coretemp`` (Intel), ``k10temp`` or ``zenpower`` (AMD) are CPU
sensors. Within a chip the package-level inputs are preferred (``Package id N``
on Intel, ``Tdie`` then ``Tctl`` on AMD, since ``Tctl`` may carry a fan-control
offset); a chip without labels contributes all its inputs. The result is the
hottest package, in °C (hwmon reports millidegrees).
"""

from __future__ import annotations

from pathlib import Path

CPU_CHIPS = frozenset({"coretemp", "k10temp", "zenpower"})

# Labels of package-level sensors, best first.
_PACKAGE_LABEL_PREFIXES = ("Package id", "Tdie", "Tctl")


class HwmonReader:
    """Hottest CPU package temperature; input files are found once and kept."""

    def __init__(self, sysfs_root: Path) -> None:
        self._hwmon = sysfs_root / "class" / "hwmon"
        self._inputs: list[Path] | None = None

    def hottest_package_c(self) -> float | None:
        """Highest package temperature in °C, or None when no CPU sensor can be read."""
        inputs = self._discover()
        temps_c: list[float] = []
        for path in inputs:
            try:
                temps_c.append(int(path.read_text().strip()) / 1000.0)
            except FileNotFoundError:
                self._inputs = None  # the chip went away: look again next time
            except (OSError, ValueError):
                continue  # one sensor failing must not hide the others
        return max(temps_c) if temps_c else None

    def _discover(self) -> list[Path]:
        if self._inputs is None:
            self._inputs = []
            if self._hwmon.is_dir():
                for chip_dir in sorted(self._hwmon.iterdir()):
                    if _chip_name(chip_dir) in CPU_CHIPS:
                        self._inputs.extend(_package_inputs(chip_dir))
        return self._inputs


def _chip_name(chip_dir: Path) -> str | None:
    try:
        return (chip_dir / "name").read_text().strip()
    except OSError:
        return None


def _package_inputs(chip_dir: Path) -> list[Path]:
    inputs = sorted(chip_dir.glob("temp*_input"))
    labelled = {path: _label(path) for path in inputs}
    for prefix in _PACKAGE_LABEL_PREFIXES:
        chosen = [p for p, label in labelled.items() if label and label.startswith(prefix)]
        if chosen:
            return chosen
    return inputs


def _label(input_path: Path) -> str | None:
    label_path = input_path.with_name(input_path.name.replace("_input", "_label"))
    try:
        return label_path.read_text().strip()
    except OSError:
        return None
