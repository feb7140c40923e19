"""Inlet temperature and node input power from ``ipmitool sdr elist``.

``ipmitool`` prints one sensor per line, columns separated by ``|``:
``sdr elist``/``sdr type`` give ``name | id | status | entity | reading`` and
``sdr list`` gives ``name | reading | status``. A sensor whose status is
``ns`` (no reading, disabled) or whose reading is not a number is missing.
Sensor names differ by vendor (Dell ``Inlet Temp``/``Pwr Consumption``, HPE
``01-Inlet Ambient``/``Power Meter``, Intel ``Front Panel Temp``), so the
name patterns are parameters with common defaults.

The password is never on the command line (other users could read it in the
process list): remote BMCs take a password file (``ipmitool -f``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from wattwise.collector.bmc import BmcValues
from wattwise.errors import SourceError, SourceUnavailable

Runner = Callable[[Sequence[str], float], str]
"""Runs a command with a timeout in seconds and returns its standard output."""

INLET_NAMES = re.compile(r"inlet|intake|ambient|front panel|fnt pnl", re.IGNORECASE)
POWER_NAMES = re.compile(
    r"pwr consumption|power meter|sys(tem)? power|total power|power consumption|node power",
    re.IGNORECASE,
)
_NUMBER_WITH_UNIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+(.+?)\s*$")
_NO_READING_STATUS = frozenset({"ns", "na"})


def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """Run ``argv``; errors of the process are converted here, in one place."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as e:
        raise SourceUnavailable(f"{argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"{argv[0]} did not finish in {timeout_s} s") from e
    if done.returncode != 0:
        raise SourceError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[:200]}")
    return done.stdout


def sensor_value(line: str, unit: str) -> tuple[str, float | None] | None:
    """``(name, value)`` of one sdr line in ``unit``, value None if it has no reading."""
    columns = [c.strip() for c in line.split("|")]
    if len(columns) == 5:
        name, _, status, _, reading = columns
    elif len(columns) == 4:
        name, _, status, reading = columns
    elif len(columns) == 3:
        name, reading, status = columns
    else:
        return None
    match = _NUMBER_WITH_UNIT.match(reading)
    if match is None:
        # "Disabled", "No Reading", "0x00": a sensor of this kind, but no value.
        return (name, None) if status in _NO_READING_STATUS else None
    if match.group(2).lower() != unit:
        return None
    if status in _NO_READING_STATUS:
        return name, None
    return name, float(match.group(1))


def parse_sdr(
    text: str,
    inlet_names: re.Pattern[str] = INLET_NAMES,
    power_names: re.Pattern[str] = POWER_NAMES,
) -> BmcValues:
    """The first inlet temperature and node power sensor with a reading."""
    inlet_c: float | None = None
    power_w: float | None = None
    for line in text.splitlines():
        temperature = sensor_value(line, "degrees c")
        if temperature and inlet_c is None and inlet_names.search(temperature[0]):
            inlet_c = temperature[1]
        watts = sensor_value(line, "watts")
        if watts and power_w is None and power_names.search(watts[0]):
            power_w = watts[1]
    return BmcValues(inlet_temp_c=inlet_c, node_power_w=power_w)


class IpmiBackend:
    """Polls the local BMC (``/dev/ipmi0``) or a remote one over ``lanplus``."""

    def __init__(
        self,
        *,
        runner: Runner = run_command,
        timeout_s: float = 10.0,
        bmc_host: str | None = None,
        username: str | None = None,
        password_file: Path | None = None,
        ipmitool: str = "ipmitool",
        inlet_names: re.Pattern[str] = INLET_NAMES,
        power_names: re.Pattern[str] = POWER_NAMES,
    ) -> None:
        self._runner = runner
        self._timeout_s = timeout_s
        self._argv = [ipmitool, *_remote_options(bmc_host, username, password_file), "sdr", "elist"]
        self._inlet_names = inlet_names
        self._power_names = power_names

    @property
    def argv(self) -> list[str]:
        """The command each poll runs (holds no secret)."""
        return list(self._argv)

    def poll(self) -> BmcValues:
        output = self._runner(self._argv, self._timeout_s)
        return parse_sdr(output, self._inlet_names, self._power_names)

    def close(self) -> None:
        """Each poll is its own process: nothing to release."""


def _remote_options(
    bmc_host: str | None, username: str | None, password_file: Path | None
) -> list[str]:
    if bmc_host is None:
        return []
    options = ["-I", "lanplus", "-H", bmc_host]
    if username:
        options += ["-U", username]
    if password_file:
        options += ["-f", str(password_file)]
    return options
